"""Write README.md from nbs/index.ipynb (nbdev_readme needs Quarto, which is not always installed).

Markdown cells are copied, visible code cells become ```python blocks with their printed output, hidden cells
(`#| hide`) are left out, and image links are made relative to the repository root.
`python .ci/readme.py` writes README.md; `python .ci/readme.py --check` exits 1 if README.md is out of date."""
import json, re, sys
from pathlib import Path

root = Path(__file__).resolve().parent.parent
nb = json.loads((root/'nbs'/'index.ipynb').read_text(encoding='utf-8'))

def src(c): return ''.join(c['source']).strip('\n')

parts = ['<!-- Written from nbs/index.ipynb by .ci/readme.py: edit the notebook, then run `python .ci/readme.py`. -->']
for c in nb['cells']:
    s = src(c)
    if c['cell_type'] == 'markdown':
        s = re.sub(r'\]\((?!https?://|/|#)([^)]+)\)', r'](nbs/\1)', s)
        # the title and the `> description` line become a heading and a quote, as nbdev_readme does
        parts.append(s)
    elif c['cell_type'] == 'code':
        lines = s.splitlines()
        if any(l.strip() in ('#| hide', '#|hide') for l in lines): continue
        code = '\n'.join(l for l in lines if not l.startswith('#|')).strip('\n')
        if code: parts.append(f'```python\n{code}\n```')
        text = ''.join(''.join(o['text']) for o in c.get('outputs', []) if o.get('output_type') == 'stream').rstrip()
        if text: parts.append(f'```\n{text}\n```')
readme = '\n\n'.join(parts) + '\n'
dest = root/'README.md'
if '--check' in sys.argv:
    if not dest.exists() or dest.read_text(encoding='utf-8') != readme:
        print('README.md is out of date with nbs/index.ipynb: run `python .ci/readme.py`'); sys.exit(1)
    print('README.md is in step with nbs/index.ipynb')
else:
    dest.write_text(readme, encoding='utf-8'); print(f'wrote {dest}')
