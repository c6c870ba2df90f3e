#!/usr/bin/env python3
"""gap: where a program's extra time under an allocator goes, against glibc.

    python3 bench/gap.py -p PRELOAD.so [-n RUNS] [-f] -- COMMAND [ARG...]

Runs COMMAND RUNS times (default 3) under glibc and as often under
LD_PRELOAD=PRELOAD.so, alternating, each under `perf record -e cpu-clock -g`,
and splits the samples by where they fell:

  program        the program's own code and its libraries
  allocator      the preload; under glibc, libc's malloc functions (or the
                 jemalloc or tcmalloc the program links, which the preload
                 replaces too)
  libc           the rest of libc (memcpy, memset, strlen, locks...)
  kernel: ...    by what entered the kernel: page faults, madvise, mprotect,
                 mmap/munmap/mremap, other system calls, and the rest
                 (interrupts, scheduling, exit)

Each line is the median over the runs, in ms of CPU (one sample every 250 us
of CPU time), then the difference; then the allocator's functions that
took most (the mean of a run; inlined code counts as its caller). The call graphs are what tell a fault
from a system call: a sample in clear_page is a fault's if a fault entered
the kernel, madvise's if madvise did.

With -f, one run more of the preload under `perf record -e page-faults -d -g`
counts the faults by the wing of labyrinth's default maze they hit (small
class size, or a large class's pages) and, outside it, by what they hit:
the maze index, a file's pages (libc.so.6, the preload...), [stack], or
anonymous memory named by the preload's innermost function in the fault's
call chain (maze_reserve: the wing table; cache_clear: a thread cache...). The maze is the
largest PROT_NONE reservation the process made; its wings are 32 GiB slices
(-w sets the shift, 35, for a maze halved under ulimit -v).

Needs perf with cpu-clock and call graphs (root, or perf_event_paranoid of
1 or less); kernel symbols need kptr_restrict 0, or kernel samples are only
told apart by the fault or system call entry perf could name.
"""
import argparse
import collections
import os
import re
import statistics
import subprocess
import sys
import tempfile

PERIOD_NS = 250000

# glibc's malloc, by symbol: its part of the glibc column.
GLIBC_MALLOC = re.compile(
    r'^(__libc_|__GI___libc_)?(malloc|free|cfree|calloc|realloc|memalign|valloc|'
    r'pvalloc|posix_memalign|aligned_alloc|malloc_usable_size)$|'
    r'^(_int_|malloc_|unlink_chunk|tcache|sysmalloc|systrim|arena_|_mid_memalign)')

# Allocators a program may link instead of glibc's (redis-server on Debian
# links jemalloc, whose malloc the preload's replaces): the glibc column's
# allocator then.
OTHER_MALLOCS = ('libjemalloc.so', 'libtcmalloc', 'libmimalloc.so')

# Kernel entries, innermost first wins: a fault inside a system call is a fault.
KERNEL_ENTRIES = [
    ('kernel: page faults', ('exc_page_fault', 'asm_exc_page_fault')),
    ('kernel: madvise', ('__x64_sys_madvise', '__do_sys_madvise')),
    ('kernel: mprotect', ('__x64_sys_mprotect', 'do_mprotect_pkey')),
    ('kernel: mmap/munmap/mremap', ('__x64_sys_mmap', 'vm_mmap_pgoff', '__x64_sys_munmap',
                                    '__vm_munmap', '__x64_sys_mremap')),
]
ORDER = ['program', 'allocator', 'libc'] + [k for k, _ in KERNEL_ENTRIES] + [
    'kernel: other system calls', 'kernel: other']


def classify_kernel(frames):
    for sym, _ in frames:
        for name, entries in KERNEL_ENTRIES:
            if sym in entries:
                return name
    for sym, _ in frames:
        if sym.startswith(('__x64_sys_', '__do_sys_', '__se_sys_')):
            return 'kernel: other system calls'
    return 'kernel: other'


def classify(frames, preload):
    sym, dso = frames[0]
    if dso.startswith('[kernel'):
        return classify_kernel(frames)
    base = os.path.basename(dso)
    if preload and base == os.path.basename(preload):
        return 'allocator'
    if base.startswith('libc.so'):
        return 'allocator' if GLIBC_MALLOC.match(sym) else 'libc'
    if base.startswith(OTHER_MALLOCS):
        return 'allocator'
    return 'program'


def frames_of(lines):
    """(symbol, dso) per frame of one sample, innermost first."""
    out = []
    for line in lines:
        parts = line.split(None, 1)
        if len(parts) < 2:
            continue
        m = re.match(r'(.*?)\s*\(([^()]*)\)\s*$', parts[1])
        if not m:
            continue
        sym = re.sub(r'\+0x[0-9a-f]+$', '', m.group(1)).split('@')[0]
        out.append((sym, m.group(2)))
    return out


def split_samples(data, preload, symbols):
    """Samples per part; the allocator's also per function, into symbols."""
    script = subprocess.run(['perf', 'script', '-i', data], capture_output=True,
                            text=True, check=True).stdout
    counts = collections.Counter()
    for block in script.split('\n\n'):
        lines = [l for l in block.split('\n') if l.startswith(('\t', ' '))]
        frames = frames_of(lines)
        if frames:
            part = classify(frames, preload)
            counts[part] += 1
            if part == 'allocator':
                symbols[frames[0][0]] += 1
    return counts


def record(out, preload, command, events):
    env = dict(os.environ)
    env.pop('LD_PRELOAD', None)
    wrapped = ['env'] + (['LD_PRELOAD=' + preload] if preload else []) + command
    try:
        r = subprocess.run(['perf', 'record', '-q', '-o', out] + events + ['--'] + wrapped,
                           env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    except FileNotFoundError:
        sys.exit('gap: perf is not installed')
    if r.returncode != 0:
        # perf exits with the program's status; a failed program fails the run.
        sys.exit('gap: %s failed (exit %d): %s' % (' '.join(wrapped), r.returncode,
                                                 r.stderr.strip()[-500:]))


def small_class_size(c):
    """src/room.c's classes: 16 to 128 by 16, then eight per doubling."""
    if c < 8:
        return 16 * (c + 1)
    return (9 + (c - 8) % 8) << ((c - 8) // 8 + 4)


def wing_name(w):
    if w < 64:
        return 'small %d' % small_class_size(w)
    k = w - 64
    return 'large %d KiB' % (((5 + k % 4) << (k // 4)) * 4)


MMAP_EVENT = re.compile(r' (\d+)/\d+: \[0x([0-9a-f]+)\(0x([0-9a-f]+)\) @ [^\]]*\]: (\S+) ?(.*)$')


def mappings(data):
    """Per pid, the mappings perf saw made, in order: (lo, size, prot, name)."""
    mm = subprocess.run(['perf', 'script', '-i', data, '--show-mmap-events'],
                        capture_output=True, text=True, check=True).stdout
    maps = collections.defaultdict(list)
    for line in mm.splitlines():
        if 'PERF_RECORD_MMAP' not in line:
            continue
        m = MMAP_EVENT.search(line)
        if m:
            maps[int(m.group(1))].append((int(m.group(2), 16), int(m.group(3), 16),
                                          m.group(4), m.group(5).strip()))
    return maps


def outside_name(maps, addr, caller):
    """A fault outside the maze, by what it hit: the maze index (the one
    read-write reservation of a gigabyte or more), a file or [stack], or
    anonymous memory named by the preload's innermost function in the
    fault's call chain (none: the program's own memory, or a fault inside a
    system call or libc's memcpy)."""
    for lo, size, prot, name in reversed(maps):
        if lo <= addr < lo + size:
            if name == '//anon' or not name:
                if prot.startswith('rw') and size >= 1 << 30:
                    return 'maze index'
                return 'anonymous, ' + (caller or 'no allocator frame')
            return os.path.basename(name)
    return 'unmapped (a mapping perf did not see)'


def faults_by_wing(data, shift, preload):
    maps = mappings(data)
    maze = {}
    for pid, ms in maps.items():
        for lo, size, prot, name in ms:
            if prot == '---p' and name == '//anon' and size >= 1 << 40 and \
                    size > maze.get(pid, (0, 0))[1]:
                maze[pid] = (lo, size)
    out = subprocess.run(['perf', 'script', '-i', data, '-F', 'pid,addr,ip,sym,dso'],
                         capture_output=True, text=True, check=True).stdout
    lib = os.path.basename(preload)
    counts = collections.Counter()
    samples = []
    for line in out.splitlines():
        if line.startswith('\t'):      # a frame: ip, symbol, (dso)
            f = line.split()
            if samples and not samples[-1][2] and len(f) >= 3 and \
                    os.path.basename(f[-1].strip('()')) == lib:
                samples[-1][2] = f[1]
        elif line.strip():
            f = line.split()
            samples.append([int(f[0]), int(f[1], 16), ''])
    for pid, addr, caller in samples:
        lo, size = maze.get(pid, (0, 0))
        # The maze starts at the first 2 MiB boundary of its reservation.
        base = (lo + (1 << 21) - 1) & ~((1 << 21) - 1)
        if base <= addr < lo + size:
            counts[wing_name((addr - base) >> shift)] += 1
        else:
            counts['outside: ' + outside_name(maps.get(pid, []), addr, caller)] += 1
    return counts


def main():
    ap = argparse.ArgumentParser(usage='%(prog)s -p PRELOAD.so [-n RUNS] [-f] -- COMMAND [ARG...]')
    ap.add_argument('-p', dest='preload', required=True)
    ap.add_argument('-n', dest='runs', type=int, default=3)
    ap.add_argument('-f', dest='faults', action='store_true')
    ap.add_argument('-w', dest='shift', type=int, default=35)
    ap.add_argument('command', nargs='+')
    a = ap.parse_args()
    preload = os.path.abspath(a.preload)
    cpu = ['-e', 'cpu-clock', '-c', str(PERIOD_NS), '-g']
    runs = {'glibc': [], 'labyrinth': []}
    symbols = {'glibc': collections.Counter(), 'labyrinth': collections.Counter()}
    with tempfile.TemporaryDirectory(prefix='gap.') as tmp:
        for r in range(a.runs):
            order = [('glibc', None), ('labyrinth', preload)]
            for label, so in (order if r % 2 == 0 else order[::-1]):
                data = os.path.join(tmp, '%s-%d.data' % (label, r))
                record(data, so, a.command, cpu)
                runs[label].append(split_samples(data, so, symbols[label]))
        ms = PERIOD_NS / 1e6
        print('%-28s %10s %10s %10s   (ms of CPU, medians of %d runs)'
              % ('', 'glibc', 'labyrinth', 'more', a.runs))
        total = {k: 0.0 for k in runs}
        for cat in ORDER:
            med = {k: statistics.median(c[cat] for c in v) * ms for k, v in runs.items()}
            for k in med:
                total[k] += med[k]
            print('%-28s %10.1f %10.1f %+10.1f' % (cat, med['glibc'], med['labyrinth'],
                                                  med['labyrinth'] - med['glibc']))
        print('%-28s %10.1f %10.1f %+10.1f  (%.3fx)' % ('all', total['glibc'], total['labyrinth'],
              total['labyrinth'] - total['glibc'],
              total['labyrinth'] / total['glibc'] if total['glibc'] else 0))
        for label, syms in symbols.items():
            top = ', '.join('%s %.1f' % (name, n * ms / a.runs) for name, n in syms.most_common(8))
            print('allocator under %s, ms a run: %s' % (label, top or 'none'))
        if a.faults:
            data = os.path.join(tmp, 'faults.data')
            record(data, preload, a.command, ['-e', 'page-faults', '-c', '1', '-d', '-g'])
            counts = faults_by_wing(data, a.shift, preload)
            print('\npage faults under labyrinth by wing, or by what they hit outside the maze '
                  '(%d in all):' % sum(counts.values()))
            for name, n in counts.most_common(32):
                print('%9d  %s' % (n, name))
    return 0


if __name__ == '__main__':
    sys.exit(main())
