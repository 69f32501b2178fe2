"""golfpack.data: token shards, bpb byte tables, corpora, tokenization.

    read_shard / write_shard / read_shards / ShardWriter   the challenge's .bin shard format (shards.py)
    build_byte_tables / count_bytes / ByteTables           bytes per target token for bpb (bytes.py)
    iter_documents / stdlib_corpus                          document streams (corpus.py)
    tokenize_documents                                      corpus -> train/val shards (tokenize.py)
    train_tokenizer                                         SentencePiece BPE, challenge ids (tokenizer_train.py)
"""
from golfpack.data.bytes import ByteTables, build_byte_tables, count_bytes, count_stream_bytes
from golfpack.data.corpus import iter_documents, stdlib_corpus
from golfpack.data.shards import ShardWriter, read_shard, read_shards, write_shard

__all__ = ["ByteTables", "build_byte_tables", "count_bytes", "count_stream_bytes", "iter_documents",
           "stdlib_corpus", "ShardWriter", "read_shard", "read_shards", "write_shard"]
