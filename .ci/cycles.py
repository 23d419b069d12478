#!/usr/bin/env python3
"""Module import cycles in a Rust crate: an edge A -> B when a file of module A names a path
into module B (use crate::…, super::…, or crate::… in code). Modules are files (mod.rs = its dir)."""
import os, re, sys
root = sys.argv[1]  # e.g. src
crate = sys.argv[2] if len(sys.argv) > 2 else 'crate'
mods = {}
for d, _, fs in os.walk(root):
    for f in fs:
        if not f.endswith('.rs'): continue
        p = os.path.join(d, f)
        rel = os.path.relpath(p, root)[:-3].split(os.sep)
        if rel[-1] in ('mod', 'lib', 'main'): rel = rel[:-1]
        mods['::'.join(rel)] = p
def strip_tests(text):
    i = text.find('#[cfg(test)]')
    text = text if i < 0 else text[:i]
    return '\n'.join(l for l in text.split('\n') if not l.lstrip().startswith('//'))
def resolve(cur, path):
    parts = path.split('::')
    if parts[0] == 'crate': base = []; parts = parts[1:]
    elif parts[0] == 'super':
        base = cur.split('::') if cur else []
        while parts and parts[0] == 'super': base = base[:-1]; parts = parts[1:]
    elif parts[0] == 'self': base = cur.split('::') if cur else []; parts = parts[1:]
    else: return None
    full = base + parts
    while full:
        m = '::'.join(full)
        if m in mods: return m
        full = full[:-1]
    return None
edges = {}
for m, p in mods.items():
    text = strip_tests(open(p).read())
    # is this file a mod.rs/lib.rs? then 'super' is relative to parent of m; self = m
    cur = m
    if not (p.endswith('mod.rs') or p.endswith('lib.rs') or p.endswith('main.rs')):
        # for a leaf file, `super` means the parent module
        pass
    for path in re.findall(r'\b((?:crate|super|self)(?:::[A-Za-z_][A-Za-z0-9_]*)+)', text):
        t = resolve(cur if (p.endswith('mod.rs') or p.endswith('lib.rs')) else cur, path)
        if path.startswith('super') and not (p.endswith('mod.rs') or p.endswith('lib.rs')):
            t = resolve(cur, path)
        if t is None or t == m: continue
        # ignore edges to ancestors (parent module re-exports) and descendants (children)
        if m.startswith(t + '::') or t.startswith(m + '::') or t == '': continue
        edges.setdefault(m, set()).add(t)
# cycles between sibling-level modules: collapse each module to the pair's common level
def top_pair(a, b):
    pa, pb = a.split('::'), b.split('::')
    i = 0
    while i < min(len(pa), len(pb)) and pa[i] == pb[i]: i += 1
    return '::'.join(pa[:i+1]), '::'.join(pb[:i+1])
g = {}
for a, ts in edges.items():
    for b in ts:
        x, y = top_pair(a, b)
        if x != y: g.setdefault(x, set()).add(y)
# find strongly connected components
index = {}; low = {}; st = []; on = set(); out = []; c = [0]
sys.setrecursionlimit(10000)
def sc(v):
    index[v] = low[v] = c[0]; c[0] += 1; st.append(v); on.add(v)
    for w in g.get(v, ()):
        if w not in index: sc(w); low[v] = min(low[v], low[w])
        elif w in on: low[v] = min(low[v], index[w])
    if low[v] == index[v]:
        comp = []
        while True:
            w = st.pop(); on.discard(w); comp.append(w)
            if w == v: break
        if len(comp) > 1: out.append(sorted(comp))
for v in list(g): 
    if v not in index: sc(v)
for comp in out:
    print('cycle:', ' <-> '.join(comp))
    for a in comp:
        for b in sorted(g.get(a, ())):
            if b in comp: print('   ', a, '->', b)
sys.exit(1 if out else 0)
