"""golfpack.codec"""
