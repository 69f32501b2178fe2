# Artifact -> tensors, with only torch, numpy and the standard library (FORMAT.md, csrc/RANS.md).
# A template of the exported script: `#if FLAG` / `#endif` lines keep a block only when the
# artifact needs it (golfpack/export/preprocess.py); the builder minifies what is left.
import os, sys, math, json, zlib, lzma, struct, time, glob
import numpy as np
import torch
import torch.nn.functional as F
from torch import nn


class Bad(Exception):
    """A user-facing error: main() prints it as one line and exits with status 2."""


def need(ok, msg):
    if not ok:
        raise Bad(msg)


FLOATS = {'float16': np.float16, 'float32': np.float32, 'bfloat16': np.uint16, 'float64': np.float64}
DTYPES = {'float32': torch.float32, 'float16': torch.float16, 'bfloat16': torch.bfloat16, 'float64': torch.float64}
LOW = 1 << 31  # rANS states live in [2^31, 2^63)


def read_artifact(path):
    """(manifest dict, payload memoryview): header, CRC and manifest checked (FORMAT.md 1-2)."""
    try:
        with open(path, 'rb') as f:
            b = f.read()
    except OSError as e:
        raise Bad(f'cannot read the artifact {path}: {e.strerror}')
    need(len(b) >= 28 and b[:8] == b'GOLFPACK', f'{path} is not a golfpack artifact')
    ver, flags, coding, r1, r2, stored, raw, crc = struct.unpack_from('<HHBBHIII', b, 8)
    need(ver == 1, f'{path}: artifact format version {ver}, this script reads version 1')
    need(28 + stored <= len(b) and zlib.crc32(b[28:28 + stored], zlib.crc32(b[:24])) == crc,
         f'{path}: header checksum mismatch (artifact is corrupt)')
    m = b[28:28 + stored]
    need(coding in (0, 2), f'{path}: manifest coding {coding} needs zstd; export the artifact with golfpack export')
    if coding == 2:
        d = lzma.LZMADecompressor()
        try:
            m = d.decompress(m, raw + 1)
        except lzma.LZMAError:
            raise Bad(f'{path}: manifest does not decompress (artifact is corrupt)')
    need(len(m) == raw, f'{path}: manifest size mismatch (artifact is corrupt)')
    try:
        man = json.loads(m)
    except ValueError:
        raise Bad(f'{path}: manifest is not JSON (artifact is corrupt)')
    pay = memoryview(b)[28 + stored:]
    need(len(pay) == man['payload_bytes'], f'{path}: payload is {len(pay)} bytes, the manifest says {man["payload_bytes"]}')
    need(sum(math.prod(t['shape']) for t in man['tensors']) <= 1 << 30, f'{path}: more than 2^30 elements')
    return man, pay


# ------------------------------------------------------------------ rANS (csrc/RANS.md)

def slot_tables(freq, P):
    """Per slot of [0, 2^P): (symbol, frequency, slot - cum) of the symbol owning it."""
    sym = np.repeat(np.arange(256, dtype=np.uint8), freq)
    f = np.asarray(freq, np.uint64)
    cum = np.cumsum(f) - f
    return sym, f[sym], np.arange(1 << P, dtype=np.uint64) - cum[sym]


class Job:
    """One rANS stream to decode: lanes, states, words, its tables and (rans_rc) table per position."""

    def __init__(self, count, lanes, P, payload, tabs, where, tid=None):
        need(len(payload) >= 8 * lanes and (len(payload) - 8 * lanes) % 4 == 0, f'{where}: rANS payload length')
        self.count, self.lanes, self.P, self.tabs, self.tid, self.where = count, lanes, P, tabs, tid, where
        self.x = np.frombuffer(payload, '<u8', lanes).copy()
        self.w = np.frombuffer(payload, '<u4', offset=8 * lanes)
        need(((self.x >= LOW) & (self.x < 1 << 63)).all(), f'{where}: rANS initial state out of range')
        need(count <= 24 * (1 << P) * (len(payload) // 4 + 8), f'{where}: rANS count too large for the stream')


def v1_stream(b, count, where):
    """A v1 rANS stream (RANS.md 1-2): decoded symbols (one-symbol / empty tables) or a Job."""
    b = bytes(b)
    need(len(b) >= 1, f'{where}: empty rANS stream')
    head = b[0]
    if head == 0:
        need(count == 0 and len(b) == 1, f'{where}: empty rANS table')
        return np.zeros(0, np.uint8)
    P, k, sparse = head & 15, head >> 4 & 3, head & 64
    need(12 <= P <= 15 and not head & 128 and len(b) >= 3, f'{where}: bad rANS table head')
    lo, hi = b[1], b[2]
    need(lo <= hi, f'{where}: rANS alphabet')
    pos, n = 3, hi - lo + 1
    present = list(range(lo, hi + 1))
    if sparse:
        nb = (n + 7) // 8
        bits = np.unpackbits(np.frombuffer(b, np.uint8, nb, 3), bitorder='little')[:n]
        present = [lo + i for i in np.flatnonzero(bits)]
        pos += nb
    freq = [0] * 256
    for s in present:
        v = sh = 0
        while True:
            need(pos < len(b), f'{where}: rANS table truncated')
            c = b[pos]
            pos += 1
            v |= (c & 127) << sh
            sh += 7
            if c < 128:
                break
            need(sh < 21, f'{where}: rANS varint')
        freq[s] = v
    need(sum(freq) == 1 << P and freq[lo] and freq[hi], f'{where}: rANS frequencies do not sum to 2^P')
    if sum(f > 0 for f in freq) == 1:
        need(pos == len(b), f'{where}: payload after a one-symbol table')
        return np.full(count, lo, np.uint8)
    return Job(count, min(1 << k, count), P, b[pos:], [slot_tables(freq, P)], where)


#if rans_rc
QUARTER = (65536, 55109, 46341, 38968)


def rc_freqs(codes, lo, P):
    """Frequencies of one rans_rc table from its quarter-bit code lengths (RANS.md 6.2, integer only)."""
    M = 1 << P
    f = [0] * 256
    order = [lo + i for i, v in enumerate(codes) if v >= 0]
    need(order, 'rans_rc table has no present symbol')
    for s in order:
        v = codes[s - lo]
        f[s] = max(1, (QUARTER[v & 3] << P) >> (16 + (v >> 2)))
    tot = sum(f)
    if tot != M:
        for s in order:
            f[s] = max(1, f[s] * M // tot)
        tot = sum(f)
    order.sort(key=lambda s: -f[s])
    k = 0
    while tot < M:
        f[order[k % len(order)]] += 1
        k += 1
        tot += 1
    while tot > M:
        s = order[k % len(order)]
        k += 1
        if f[s] > 1:
            f[s] -= 1
            tot -= 1
    return f


class RC:
    """A rans_rc stream (RANS.md 6): header and side streams; `job()` once the sides are decoded."""

    def __init__(self, b, count, where):
        b = bytes(b)
        need(len(b) >= 31, f'{where}: rans_rc header')
        ver, P, lanes, lo, hi, cols, R, C, T, *lens = struct.unpack_from('<BBBBBIHHHIIII', b)
        need(ver == 1 and 10 <= P <= 15 and lanes in (1, 2, 4, 8) and lo <= hi and cols and count % cols == 0
             and 1 <= T <= 256 and 1 <= R <= 256 and 1 <= C <= 256 and 31 + sum(lens) <= len(b),
             f'{where}: bad rans_rc header')
        self.P, self.lanes, self.lo, self.cols, self.R, self.C, self.T = P, lanes, lo, cols, R, C, T
        self.count, self.W, self.where = count, hi - lo + 1, where
        rows, pos, self.sides = count // cols, 31, []
        for n, ln in zip((rows, cols, R * C, T * self.W), lens):
            self.sides.append(v1_stream(b[pos:pos + ln], n, where))
            pos += ln
        self.payload = b[pos:]

    def job(self, sides):
        rc, cc, tmap, cb = (s.astype(np.int64) for s in sides)
        need(rc.max(initial=0) < self.R and cc.max(initial=0) < self.C and tmap.max(initial=0) < self.T
             and cb.max(initial=0) <= 8 * self.P + 1, f'{self.where}: rans_rc side stream out of range')
        z = cb.reshape(self.T, self.W) - 1
        v = np.cumsum(np.where(z < 0, 0, np.where(z & 1, -((z + 1) >> 1), z >> 1)), 1)
        need(((z < 0) | ((v >= 0) & (v <= 4 * self.P))).all(), f'{self.where}: rans_rc table code out of range')
        codes = np.where(z < 0, -1, v)
        tabs = [slot_tables(rc_freqs(c.tolist(), self.lo, self.P), self.P) for c in codes]
        tid = tmap[rc[:, None] * self.C + cc[None, :]].astype(np.uint8).ravel()
        return Job(self.count, min(self.lanes, self.count), self.P, self.payload, tabs, self.where, tid)
#endif


#if native
C_SOURCE = r'''#include <stdint.h>
int dec(int64_t n, int64_t lanes, int64_t P, uint64_t *x, const uint32_t *w, int64_t nw, const uint8_t *tid,
        const uint8_t *sym, const uint64_t *frq, const uint64_t *bias, uint8_t *out) {
  uint64_t m = (1ull << P) - 1; int64_t k = 0, j = 0;
  for (int64_t i = 0; i < n; i++, j = j + 1 == lanes ? 0 : j + 1) {
    uint64_t g = ((uint64_t)tid[i] << P) + (x[j] & m);
    out[i] = sym[g];
    x[j] = frq[g] * (x[j] >> P) + bias[g];
    if (x[j] < (1ull << 31)) { if (k == nw) return -1; x[j] = x[j] << 32 | w[k++]; }
  }
  return k == nw ? 0 : -1;
}
'''
NATIVE = []


def native():
    """The C loop of RANS.md 2, compiled now with the system's C compiler (None: no compiler, or
    EVAL_NATIVE=0), then the numpy decoder below does the work."""
    if not NATIVE:
        NATIVE.append(None)
        if os.environ.get('EVAL_NATIVE', '1') != '0':
            import ctypes, subprocess, tempfile
            d = tempfile.mkdtemp()
            src, so = os.path.join(d, 'rans.c'), os.path.join(d, 'rans.so')
            with open(src, 'w') as f:
                f.write(C_SOURCE)
            try:
                subprocess.run([os.environ.get('CC', 'cc'), '-O2', '-shared', '-fPIC', src, '-o', so], check=True,
                               capture_output=True)
                NATIVE[0] = ctypes.CDLL(so).dec
                NATIVE[0].argtypes = [ctypes.c_int64] * 3 + [ctypes.c_void_p] * 8
            except (OSError, subprocess.CalledProcessError):
                pass
    return NATIVE[0]


def run_native(f, jobs):
    outs = []
    for j in jobs:
        out = np.empty(j.count, np.uint8)
        tid = j.tid if j.tid is not None else np.zeros(j.count, np.uint8)
        t = [np.ascontiguousarray(np.concatenate(a)) for a in zip(*j.tabs)]
        x, w = j.x.copy(), np.ascontiguousarray(j.w)
        need(f(j.count, j.lanes, j.P, *(a.ctypes.data for a in (x, w)), len(w), tid.ctypes.data,
               *(a.ctypes.data for a in t), out.ctypes.data) == 0,
             f'{j.where}: rANS words do not match the symbols (stream ends early or has unread words)')
        outs.append(out)
    return outs
#endif


def decode_jobs(jobs):
#if native
    f = native()
    if f is not None:
        return run_native(f, jobs)
#endif
    return run_jobs(jobs)


def run_jobs(jobs):
    """Decode every Job at once: one numpy step per round advances every lane of every stream.

    Lanes are kept job by job, lane by lane, so the k-th lane of a stream that renormalizes in a
    round reads that stream's k-th next word: the read order of RANS.md 2."""
    outs = [np.empty(j.count, np.uint8) for j in jobs]
    if not jobs:
        return outs
    sym, frq, bias, tid, words, out = [], [], [], [], [], []
    lane = {k: [] for k in 'jpTtWo'}  # job, P, table base, tid base, position base, step
    tb = ob = wb = 0
    wlo, whi = [], []
    for q, j in enumerate(jobs):
        for s, f, c in j.tabs:
            sym.append(s)
            frq.append(f)
            bias.append(c)
        tid.append(j.tid if j.tid is not None else np.zeros(j.count, np.uint8))
        words.append(j.w)
        wlo.append(wb)
        whi.append(wb + len(j.w))
        for i in range(j.lanes):
            for k, v in zip('jpTtWo', (q, j.P, tb, ob, ob + i, j.lanes)):
                lane[k].append(v)
        tb += len(j.tabs) << j.P
        ob += j.count
        wb += len(j.w)
    SYM, FRQ, BIAS = np.concatenate(sym), np.concatenate(frq), np.concatenate(bias)
    TID, WORDS = np.concatenate(tid).astype(np.int64), np.concatenate(words).astype(np.uint64)
    OUT = np.empty(ob, np.uint8)
    J, P, TB, PB, ST = (np.array(lane[k], np.int64) for k in 'jpTWo')
    X = np.concatenate([j.x for j in jobs])
    counts = np.array([j.count for j in jobs], np.int64)
    steps = (counts[J] - (PB - np.array(lane['t'])) + ST - 1) // ST  # symbols each lane decodes
    wp, wend = np.array(wlo, np.int64), np.array(whi, np.int64)
    WORDS, top = np.r_[WORDS, np.uint64(0)], len(WORDS)  # a read past the end is caught below, not a crash
    r = 0
    for stop in np.unique(steps):
        act = np.flatnonzero(steps > r)  # job-major order is kept
        x, p, tb_, pb, st, jj = X[act], P[act].astype(np.uint64), TB[act], PB[act], ST[act], J[act]
        mask, pi = (np.uint64(1) << p) - np.uint64(1), P[act]
        first = np.flatnonzero(np.r_[True, jj[1:] != jj[:-1]])
        last = np.r_[first[1:], len(jj)] - 1
        lead = np.repeat(first, last - first + 1)  # each lane's first lane of its stream
        jobs_here = jj[first]
        for r in range(r, int(stop)):
            pos = pb + r * st
            g = tb_ + (TID[pos] << pi) + (x & mask).astype(np.int64)
            OUT[pos] = SYM[g]
            x = FRQ[g] * (x >> p) + BIAS[g]
            nd = x < LOW
            c = np.cumsum(nd)
            sel = np.flatnonzero(nd)
            # the k-th renormalizing lane of a stream takes that stream's k-th next word
            base = c - nd  # renormalizing lanes before this one
            x[sel] = (x[sel] << np.uint64(32)) | WORDS[np.minimum(wp[jj[sel]] + base[sel] - base[lead[sel]], top)]
            wp[jobs_here] += c[last] - base[first]
        r = int(stop)
        X[act] = x
    # A stream that read past its words has wp > wend.
    bad = np.flatnonzero(wp != wend)
    need(not bad.size, f'{jobs[int(bad[0])].where if bad.size else ""}: rANS words do not match the symbols '
                       f'(stream ends early or has unread words)')
    o = 0
    for q, j in enumerate(jobs):
        outs[q] = OUT[o:o + j.count]
        o += j.count
    return outs


# ------------------------------------------------------------------ streams and schemes (FORMAT.md 2-3)

def decode_tensors(man, pay):
    """{name: (entry, {role: decoded numpy array})}: int streams as int8 symbols, floats as values."""
    todo, done, rcs = [], {}, []
    for t in man['tensors']:
        for role, s in t['streams'].items():
            where = f'tensor {t["name"]!r} {role} stream'
            d = pay[s['offset']:s['offset'] + s['length']]
            need(len(d) == s['length'] and zlib.crc32(d) == s['crc32'], f'{where}: checksum mismatch (artifact is corrupt)')
            isint = s['type'] == 'int'
            n = s['count'] * (1 if isint else np.dtype(FLOATS[s['type']]).itemsize)
            key = (t['name'], role)
            c = s['coder']
            if c == 'raw':
#if raw
                if isint:
                    b = s['bits']
                    need(len(d) == (n * b + 7) // 8, f'{where}: raw length')
                    bits = np.unpackbits(np.frombuffer(d, np.uint8), bitorder='little')[:n * b].reshape(n, b)
                    u = bits.astype(np.int64) @ (1 << np.arange(b))
                    done[key] = u - ((u >> (b - 1)) << b)
                else:
                    need(len(d) == n, f'{where}: raw length')
                    done[key] = np.frombuffer(d, np.uint8)
#else
                raise Bad(f'{where}: raw coder not exported')
#endif
            elif c == 'rans':
                v = v1_stream(d, n, where)
                (todo.append((key, v)) if isinstance(v, Job) else done.__setitem__(key, v))
#if rans_rc
            elif c == 'rans_rc':
                need(isint, f'{where}: rans_rc codes int streams only')
                rcs.append((key, RC(d, n, where)))
#endif
            else:
                raise Bad(f'{where}: coder {c!r} is not in this script (export it with golfpack export)')
    # The side streams of every rans_rc stream first (short), then every payload in one pass.
    side = [((k, i), v) for k, rc in rcs for i, v in enumerate(rc.sides)]
    got = dict(zip([k for k, v in side if isinstance(v, Job)], decode_jobs([v for _, v in side if isinstance(v, Job)])))
    sides = {k: got.get(k, v) for k, v in side}
    todo += [(k, rc.job([sides[(k, i)] for i in range(4)])) for k, rc in rcs]
    done.update(zip([k for k, _ in todo], decode_jobs([v for _, v in todo])))
    out = {}
    for t in man['tensors']:
        arrs = {}
        for role, s in t['streams'].items():
            a = done[(t['name'], role)]
            if s['type'] == 'int':
                if a.dtype == np.uint8 and s['coder'] != 'raw':
                    a = a.astype(np.int16) - 128
                lim = 1 << (s['bits'] - 1)
                need(a.size == 0 or (a.min() >= -lim and a.max() < lim), f'tensor {t["name"]!r}: symbols out of range')
                a = a.astype(np.int8)
            else:
                a = np.ascontiguousarray(a).view(np.uint8)
                isz = np.dtype(FLOATS[s['type']]).itemsize
#if shuffle
                if s['transform'] == 'byteshuffle':
                    a = a.reshape(isz, -1).T.copy()
#endif
                a = a.reshape(-1).view(FLOATS[s['type']])
            need(a.size == s['count'], f'tensor {t["name"]!r}: {role} holds {a.size} values, expected {s["count"]}')
            arrs[role] = a
        out[t['name']] = (t, arrs)
    return out


def floats(a, kind):
    t = torch.from_numpy(a.copy())
    return t.view(torch.bfloat16) if kind == 'bfloat16' else t


def dense(t, arrs, cast=True, lowrank=True):
    """The decoded tensor by codec/schemes.py's arithmetic; cast=False keeps float32 (packed layers)."""
    kind, shape = t['scheme']['kind'], t['shape']
    fl = lambda r: floats(arrs[r], t['streams'][r]['type'])
    if kind == 'float':
        w = fl('data').reshape(shape)
    else:
        q = torch.from_numpy(arrs['symbols'].astype(np.float32))
        s = fl('scales').float()
        need(bool(torch.isfinite(s).all()), f'tensor {t["name"]!r}: scales hold NaN or Inf')
        rows = shape[0] if shape else 1
        if kind == 'int_rowscale':
            w = q.reshape(rows, -1) * s.view(rows, 1)
#if tensorscale
        elif kind == 'int_tensorscale':
            w = q * s.reshape(())
#endif
#if groupscale
        elif kind == 'int_groupscale':
            g, cols = t['scheme']['group'], max(1, math.prod(shape[1:]))
            w = q.reshape(rows, -1) * s.view(rows, -1).repeat_interleave(g, 1)[:, :cols]
#endif
        else:
            raise Bad(f'tensor {t["name"]!r}: scheme {kind!r} is not in this script')
        w = w.reshape(shape)
#if lowrank
        if 'lowrank' in t['scheme'] and lowrank:
            a, b = factors(t, arrs)
            w = w + a @ b
#endif
    return w.to(DTYPES[t['dtype']]).contiguous() if cast else w.contiguous()


#if lowrank
def factors(t, arrs):
    """LQER factors A [N, r], B [r, K] in float32 (FORMAT.md, low-rank term)."""
    r, (n, k) = t['scheme']['lowrank']['rank'], t['shape']
    f = lambda role: torch.from_numpy(arrs[role].astype(np.float32)).reshape(r, -1) * floats(
        arrs[role + '_scales'], t['streams'][role + '_scales']['type']).float().view(r, 1)
    return f('lowrank_a').t().contiguous(), f('lowrank_b')
#endif
