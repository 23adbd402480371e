"""Run the notebooks' tests with `nbdev_test` and say how it is going: a line per notebook as it starts and as it
finishes, nbdev's time per notebook, then the counts.

    python .ci/test.py                             # every notebook (cells marked slow or gpu are skipped)
    python .ci/test.py --path nbs/10_bench.ipynb   # one notebook
    python .ci/test.py --flags "slow gpu"          # the slow and GPU cells too

This is the README's test command and CI's step 3. Every argument except `--json FILE` (which also writes the
counts as JSON, for CI) goes to `nbdev_test` unchanged; the exit status is nbdev_test's.
"""
import json, os, re, shutil, subprocess, sys, time
from pathlib import Path

root = Path(__file__).resolve().parent.parent
TEST_CALL = re.compile(r'\b(test_eq|test_ne|test_close|test_fail|test_is|test_warns|assert)\b')

def _arg(args, name, default=None):
    return args[args.index(name) + 1] if name in args and args.index(name) + 1 < len(args) else default

def planned(args) -> list:
    "The notebooks nbdev_test selects for these arguments (its own glob and `.notest` rule)."
    from nbdev.doclinks import nbglob
    from nbdev.test import _keep_file
    kw = {k: _arg(args, f'--{k}') for k in ('file_re', 'file_glob') if _arg(args, f'--{k}')}
    return [f for f in sorted(nbglob(_arg(args, '--path'), as_path=True, **kw)) if _keep_file(f, '.notest')]

def test_statements(nbs, flags='') -> int:
    "Test calls and asserts in the cells nbdev_test runs (not exported code, not `eval: false`, not skipped flags)."
    from nbdev.config import get_config
    skip = set(get_config().tst_flags.split()) - set(flags.split())
    n = 0
    for f in nbs:
        for c in json.loads(Path(f).read_text(encoding='utf-8'))['cells']:
            if c['cell_type'] != 'code': continue
            src = ''.join(c['source'])
            direc = {l[2:].strip().split()[0] for l in src.splitlines() if l.startswith('#|') and l[2:].strip()}
            if any(d.startswith('export') for d in direc) or re.search(r'^#\|\s*eval:\s*false', src, re.M) or direc & skip: continue
            n += len(TEST_CALL.findall(src))
    return n

def main(argv) -> int:
    os.chdir(root)
    jpath = _arg(argv, '--json')
    args = [a for i, a in enumerate(argv) if a != '--json' and (i == 0 or argv[i - 1] != '--json')]
    nbs = planned(args)
    checks = test_statements(nbs, _arg(args, '--flags', ''))
    exe = shutil.which('nbdev_test', path=str(Path(sys.executable).parent)) or 'nbdev_test'
    print(f'nbdev_test: {len(nbs)} notebook(s), {checks:,} test statements; a line as each starts and finishes', flush=True)
    t0, done, failed, in_failed, raised = time.time(), 0, [], False, set()
    env = dict(os.environ, PYTHONUNBUFFERED='1')       # the workers' "Starting"/"Completed" lines arrive as they happen
    p = subprocess.Popen([exe, '--do_print', '--timing', *args], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                         text=True, env=env, bufsize=1)
    for line in p.stdout:
        s = line.rstrip('\n')
        m = re.match(r'(Starting|- Completed) (.+\.ipynb)$', s)
        if m:
            name = Path(m[2]).name
            if m[1] == 'Starting': print(f'[{time.time() - t0:5.0f}s] started {name}', flush=True)
            else:
                done += 1
                print(f'[{time.time() - t0:5.0f}s] {"FAILED  " if name in raised else "passed  "}{name}  ({done} of {len(nbs)} done)', flush=True)
            continue
        e = re.match(r'\w+ in (.+\.ipynb):$', s)            # nbdev's header of a notebook's traceback
        if e: raised.add(Path(e[1]).name)
        if s.startswith('nbdev Tests Failed On The Following Notebooks'): in_failed = True
        elif in_failed and s.startswith('\t') and s.strip().endswith('.ipynb'): failed.append(s.strip())
        print(s, flush=True)
    rc = p.wait()
    secs = time.time() - t0
    ran = max(done, len(nbs)) if rc == 0 else done
    res = dict(notebooks=len(nbs), passed=ran - len(failed), failed=len(failed), failed_notebooks=failed,
               test_statements=checks, seconds=round(secs), returncode=rc)
    if rc != 0 and not failed: print('nbdev_test stopped before reporting which notebooks failed')
    print(f"\ntests: {res['passed']} of {len(nbs)} notebooks passed, {len(failed)} failed"
          + (f" ({', '.join(failed)})" if failed else '') + f"; {checks:,} test statements; {secs:.0f} s", flush=True)
    if jpath: Path(jpath).write_text(json.dumps(res, indent=1))
    return rc

if __name__ == '__main__': sys.exit(main(sys.argv[1:]))
