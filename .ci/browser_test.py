#!/usr/bin/env python
"""Browser test of the class dashboards (nbs/class_dashboard.ipynb, built from caelab.dashboard).

1. serves the notebook with Voila on a free port of 127.0.0.1 (no browser, sources stripped);
2. drives Debian's headless Chromium through chromium-driver (Selenium), with a fresh temporary profile, the flags
   --no-sandbox --disable-gpu --disable-background-networking --disable-component-update --disable-sync, and a
   host-resolver rule that resolves no host but localhost, so the page cannot reach outside this machine;
3. checks that the dashboard rendered (sliders, a metrics-table row per ticked codec, the pictures, no error);
4. focuses the JPEG quality slider, presses Home (quality 1), measures in the page the time from the key press to
   the updated metrics table, and checks that JPEG's bytes and PSNR fell;
5. opens the Rate-distortion tab and checks its figure rendered; in the Store tab puts the image and gets it back with
   the key shown; in the Transfer tab sends it to the local receiver and waits for the latency bars; in the
   Pre-encoded tab picks a committed bitstream of results/overfit/kodak (decoded in the kernel), presses decode, and
   checks the numbers shown: the file's bytes (those on disk, and the committed ones), its bpp and, where the
   original is on this machine, a PSNR in dB within 0.01 dB of the committed one; no error;
6. saves results/dashboard_screenshot.png (and nbs/images/dashboard_screenshot.png) and results/dashboard_browser.json.
Voila (and its kernel) and the browser are always stopped. Exit status 0 when everything passed, 1 otherwise.

usage: python .ci/browser_test.py [--notebook nbs/class_dashboard.ipynb] [--timeout 150] [--decode-timeout 240]
                                  [--no-save | --out DIR]
"""
import argparse
import datetime
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
# Debian's packages by default; elsewhere (e.g. GitHub's Ubuntu runners, which ship Google Chrome) set these two
CHROMIUM = os.environ.get('CAELAB_CHROMIUM', '/usr/bin/chromium')
CHROMEDRIVER = os.environ.get('CAELAB_CHROMEDRIVER', '/usr/bin/chromedriver')
FLAGS = ['--headless=new', '--no-sandbox', '--disable-gpu', '--disable-background-networking',
         '--disable-component-update', '--disable-sync']
EXTRA = ['--no-first-run', '--no-default-browser-check', '--disable-dev-shm-usage', '--window-size=1400,1500',
         '--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE localhost, EXCLUDE 127.0.0.1']


class Failed(Exception): pass


def log(msg): print(f'[browser-test {time.strftime("%H:%M:%S")}] {msg}', flush=True)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0)); return s.getsockname()[1]


def start_voila(nb: Path, port: int, workdir: Path):
    env = dict(os.environ, JUPYTER_CONFIG_DIR=str(workdir / 'jupyter-config'), JUPYTER_RUNTIME_DIR=str(workdir / 'runtime'),
               MPLBACKEND='Agg', PYTHONUNBUFFERED='1')
    cmd = [sys.executable, '-m', 'voila', str(nb), '--no-browser', f'--port={port}', '--Voila.ip=127.0.0.1',
           '--Voila.port_retries=0', '--VoilaConfiguration.strip_sources=True']
    log_file = open(workdir / 'voila.log', 'wb')
    log('starting: ' + ' '.join(cmd[1:]))
    p = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=log_file, stderr=subprocess.STDOUT, start_new_session=True)
    return p, log_file


def wait_port(port: int, p, timeout: float):
    t = time.time()
    while time.time() - t < timeout:
        if p.poll() is not None: raise Failed(f'voila exited with status {p.returncode} before listening')
        try:
            with socket.create_connection(('127.0.0.1', port), timeout=1): return
        except OSError: time.sleep(0.3)
    raise Failed(f'voila did not listen on port {port} within {timeout:.0f} s')


def stop_voila(p):
    "Stop voila and every process it started (its kernel), whatever happened."
    if p is None or p.poll() is not None and not _children(p): return
    kids = _children(p)
    for sig, wait in ((signal.SIGTERM, 10), (signal.SIGKILL, 5)):
        for q in [p.pid] + kids:
            try: os.kill(q, sig)
            except (ProcessLookupError, PermissionError): pass
        t = time.time()
        while time.time() - t < wait and (p.poll() is None or any(_alive(k) for k in kids)): time.sleep(0.2)
        if p.poll() is not None and not any(_alive(k) for k in kids): break
    log(f'voila stopped (status {p.poll()}), {len(kids)} child process(es) stopped')


def _children(p) -> list:
    try:
        import psutil
        return [c.pid for c in psutil.Process(p.pid).children(recursive=True)]
    except Exception: return []


def _alive(pid) -> bool:
    try:
        import psutil
        return psutil.pid_exists(pid) and psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except Exception: return False


def start_browser(profile: Path):
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    for f in (CHROMIUM, CHROMEDRIVER):
        if not Path(f).exists(): raise Failed(f'{f} not found: apt-get install -y chromium chromium-driver')
    opts = webdriver.ChromeOptions()
    opts.binary_location = CHROMIUM
    for a in FLAGS + EXTRA + [f'--user-data-dir={profile}']: opts.add_argument(a)
    service = Service(executable_path=CHROMEDRIVER, log_output=str(profile.parent / 'chromedriver.log'))
    d = webdriver.Chrome(options=opts, service=service)
    d.set_page_load_timeout(120)
    return d


JS_ROW = '''
const r = document.querySelector('table.caelab-metrics tr[data-codec="jpeg"]');
if (!r) return null;
return Array.from(r.querySelectorAll('td')).map(td => td.textContent);'''

JS_WATCH = '''
window.__caelab = {key: null, changed: null};
const before = arguments[0];
const row = () => { const r = document.querySelector('table.caelab-metrics tr[data-codec="jpeg"]'); return r ? r.textContent : null; };
document.addEventListener('keydown', () => { if (window.__caelab.key === null) window.__caelab.key = performance.now(); }, true);
const obs = new MutationObserver(() => {
  if (window.__caelab.changed === null && row() !== null && row() !== before) { window.__caelab.changed = performance.now(); obs.disconnect(); }
});
obs.observe(document.querySelector('.caelab-compare'), {subtree: true, childList: true, characterData: true});'''

JS_RENDERED = '''
const imgs = Array.from(document.querySelectorAll('.caelab-compare img.widget-image'));
return {sliders: document.querySelectorAll('.caelab-compare .widget-slider').length,
        rows: document.querySelectorAll('table.caelab-metrics tr[data-codec]').length,
        pictures: imgs.filter(i => i.naturalWidth > 0).length, images: imgs.length,
        errors: Array.from(document.querySelectorAll('.caelab-error')).map(e => e.textContent),
        traceback: document.body.innerText.includes('Traceback')};'''


JS_PRECODED = '''
const p = document.querySelector('.caelab-precoded');
if (!p) return null;
const rows = {};
p.querySelectorAll('table.caelab-metrics tr[data-row]').forEach(
  r => { rows[r.dataset.row] = Array.from(r.cells).slice(1).map(c => c.textContent.trim()); });
const width = k => { const i = p.querySelector('img.caelab-precoded-' + k); return i ? i.naturalWidth : 0; };
const m = p.querySelector('.caelab-precoded-message');
return {message: m ? m.textContent.trim() : '', rows: rows, decoded: width('decoded'), original: width('original'),
        errors: Array.from(p.querySelectorAll('.caelab-error')).map(e => e.textContent),
        traceback: document.body.innerText.includes('Traceback')};'''

JS_MESSAGES = '''
window.__precoded = [];
const m = document.querySelector('.caelab-precoded-message');
new MutationObserver(() => window.__precoded.push(m.textContent.trim()))
  .observe(m, {subtree: true, childList: true, characterData: true});'''

PRECODED = ROOT / 'results' / 'overfit' / 'kodak'


def precoded_file(label: str) -> str:
    "The bitstream an example's label ('<image> q<quality>: <bpp> bpp, <psnr> dB') is about, named as caelab names it."
    from caelab.container import bitstream_name
    image, quality = label.split(': ', 1)[0].rsplit(' q', 1)
    return bitstream_name(image, float(quality))


def wait_decoded(d, file: str, timeout: float) -> dict:
    "Wait until the Pre-encoded panel has said 'decoding <file>' and then shows a result for it (or an error)."
    def done():
        said = d.execute_script('return window.__precoded')
        st = d.execute_script(JS_PRECODED)
        if st['errors'] or st['traceback']: raise Failed(f'the Pre-encoded tab shows an error: {st["errors"] or "a traceback"}')
        started = any(t.startswith(f'decoding {file}') for t in said)
        return started and st['message'].startswith(f'decoded {file}') and st['decoded'] > 0 and st
    return wait_for(d, f'{file} to be decoded', done, timeout, poll=0.5)


def check_precoded(st: dict, file: str, label: str) -> dict:
    "The numbers the Pre-encoded tab shows for `file` against the file on disk and the committed ones in its label."
    rows, size = st['rows'], (PRECODED / file).stat().st_size
    if not rows.get('file', [''])[0].startswith(file): raise Failed(f'the Pre-encoded table is not about {file}: {rows}')
    now, committed = (int(v.replace(',', '')) for v in rows['bytes'])
    if not now == committed == size: raise Failed(f'{file}: {now:,} bytes shown, {committed:,} committed, {size:,} on disk')
    bpp = float(rows['bpp'][0])                              # the label: '<image> q<quality>: <bpp> bpp, <psnr> dB'
    label_bpp, label_db = (float(t.split()[0]) for t in label.split(': ', 1)[1].split(', '))
    if abs(bpp - label_bpp) > 0.0005: raise Failed(f'{file}: {bpp} bpp shown, {label_bpp} in its label')
    psnr_now, psnr_committed = rows['psnr']
    if abs(float(psnr_committed) - label_db) > 0.005: raise Failed(f'{file}: committed PSNR {psnr_committed} dB, {label_db} in its label')
    if psnr_now == 'no original here': psnr = None                  # the Kodak originals are not on this machine
    else:
        psnr = float(psnr_now)
        if abs(psnr - float(psnr_committed)) > 0.01: raise Failed(f'{file}: PSNR {psnr} dB now, {psnr_committed} dB committed')
        if not st['original']: raise Failed(f'{file}: a PSNR was measured but the original is not shown')
    return dict(file=file, bytes=now, bpp=bpp, psnr=psnr, committed_psnr=float(psnr_committed), decode_s=float(rows['decode_s'][0]))


def shrink_png(path: Path, colours: int = 256):
    "Re-save a screenshot as an adaptive-palette PNG (a fraction of the size; text and widgets stay sharp)."
    from PIL import Image
    im = Image.open(path).convert('RGB')
    im.quantize(colours, method=Image.Quantize.MEDIANCUT, dither=Image.Dither.NONE).save(path, optimize=True)


def open_tab(d, title: str):
    from selenium.webdriver.common.by import By
    tabs = d.find_elements(By.CSS_SELECTOR, '.caelab-app .lm-TabBar-tab')
    hit = [t for t in tabs if t.text.startswith(title)]
    if not hit: raise Failed(f'no {title} tab (tabs: {[t.text for t in tabs]})')
    hit[0].click()


def parse_row(cells):
    label, setting, nbytes, bpp, ratio, psnr, ssim, ms = cells
    return dict(label=label, setting=setting, bytes=int(nbytes.replace(',', '')), bpp=float(bpp), ratio=ratio,
                psnr=float('inf') if psnr == '∞' else float(psnr), ssim=float(ssim), ms=float(ms))


def wait_for(d, what, fn, timeout, poll=0.2):
    t = time.time()
    while time.time() - t < timeout:
        v = fn()
        if v: return v
        time.sleep(poll)
    raise Failed(f'timed out after {timeout:.0f} s waiting for {what}')


def run(args) -> dict:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys
    nb = (ROOT / args.notebook).resolve()
    if not nb.is_file(): raise Failed(f'{nb}: no such notebook')
    work = Path(tempfile.mkdtemp(prefix='caelab-browser-'))
    p = log_file = d = None
    try:
        port = free_port()
        p, log_file = start_voila(nb, port, work)
        wait_port(port, p, 60)
        log(f'voila listening on 127.0.0.1:{port}')
        d = start_browser(work / 'profile')
        log(f'chromium {d.capabilities.get("browserVersion")} (headless, fresh profile)')
        t0 = time.time()
        d.get(f'http://127.0.0.1:{port}/')
        wait_for(d, 'the metrics table', lambda: d.execute_script(JS_ROW), args.timeout)
        st = wait_for(d, 'the pictures', lambda: (s := d.execute_script(JS_RENDERED))['pictures'] >= 7 and s, 60)
        load_s = time.time() - t0
        log(f'dashboard rendered in {load_s:.1f} s: {st["sliders"]} sliders, {st["rows"]} table rows, '
            f'{st["pictures"]}/{st["images"]} pictures')
        if st['errors'] or st['traceback']: raise Failed(f'the dashboard shows an error: {st["errors"] or "a traceback"}')
        if st['sliders'] < 4: raise Failed(f'only {st["sliders"]} sliders rendered')
        if st['rows'] < 2: raise Failed(f'only {st["rows"]} metrics table rows rendered')
        before = parse_row(d.execute_script(JS_ROW))
        log(f'JPEG before: {before}')
        handle = d.find_element(By.CSS_SELECTOR, '.caelab-setting-jpeg .noUi-handle')
        d.execute_script('arguments[0].scrollIntoView({block: "center"}); arguments[0].focus();', handle)
        row_text = d.execute_script('return document.querySelector(\'table.caelab-metrics tr[data-codec="jpeg"]\').textContent')
        d.execute_script(JS_WATCH, row_text)
        t1 = time.time()
        handle.send_keys(Keys.HOME)                        # the slider to its minimum: quality 1
        state = wait_for(d, 'the metrics table to change after moving the JPEG slider',
                         lambda: (w := d.execute_script('return window.__caelab'))['changed'] is not None and w, 60, poll=0.05)
        wall = time.time() - t1
        if state['key'] is None: raise Failed('the key press did not reach the page')
        latency = (state['changed'] - state['key']) / 1000
        after = parse_row(d.execute_script(JS_ROW))
        log(f'JPEG after:  {after}')
        log(f'slider key press -> updated table: {latency:.3f} s in the page ({wall:.2f} s as seen by the driver)')
        if not after['setting'].startswith('q=') or after['setting'] == before['setting']:
            raise Failed(f'the JPEG setting did not change: {before["setting"]} -> {after["setting"]}')
        if not (after['bytes'] < before['bytes'] and after['psnr'] < before['psnr']):
            raise Failed(f'lower JPEG quality should give fewer bytes and a lower PSNR: {before} -> {after}')
        # the pictures follow: wait until the caption of the reconstruction names the new setting
        wait_for(d, 'the pictures to follow', lambda: after['setting'] in d.execute_script(
            'return Array.from(document.querySelectorAll(".caelab-caption")).map(e => e.textContent).join(" ")'), 30)
        time.sleep(0.5)
        st2 = d.execute_script(JS_RENDERED)
        if st2['errors'] or st2['traceback']: raise Failed(f'the dashboard shows an error: {st2["errors"] or "a traceback"}')
        shot = work / 'dashboard_screenshot.png'
        d.execute_script('window.scrollTo(0, 0)')
        height = d.execute_script('return Math.ceil(document.querySelector(".caelab-app").getBoundingClientRect().bottom + 24)')
        d.execute_cdp_cmd('Emulation.setDeviceMetricsOverride',
                          dict(width=1400, height=int(min(max(height, 900), 2400)), deviceScaleFactor=1, mobile=False))
        time.sleep(0.5)
        d.save_screenshot(str(shot))
        d.execute_cdp_cmd('Emulation.clearDeviceMetricsOverride', {})
        shrink_png(shot)
        # the rate-distortion tab
        open_tab(d, 'Rate')
        wait_for(d, 'the rate-distortion figure', lambda: d.execute_script(
            'const i = document.querySelector(".caelab-rd-plot"); return i && i.offsetParent !== null && i.naturalWidth > 0'), 90)
        log('rate-distortion tab rendered its figure')
        # the store: put the image, see a key
        open_tab(d, 'Store')
        d.find_element(By.CSS_SELECTOR, '.caelab-store-put').click()
        key = wait_for(d, 'a store key', lambda: d.execute_script(
            'const i = document.querySelector(".caelab-store-key input"); return i && i.value.startsWith("cs1_") && i.value'), 60)
        d.find_element(By.CSS_SELECTOR, '.caelab-store-get').click()
        wait_for(d, 'the image got back with the key', lambda: d.execute_script(
            'const i = document.querySelector("img.caelab-store-image"); return i && i.naturalWidth > 0'), 60)
        log(f'store tab: put gave key {key[:10]}…, get showed the image back')
        # the transfer: send to the local receiver, see the latency bars
        open_tab(d, 'Transfer')
        d.find_element(By.CSS_SELECTOR, '.caelab-transfer-send').click()
        wait_for(d, 'the latency bars', lambda: d.execute_script(
            'const i = document.querySelector("img.caelab-transfer-plot"); return i && i.naturalWidth > 0'), 90)
        codecs = d.execute_script('return Array.from(document.querySelectorAll(".caelab-transfer table.caelab-metrics tbody tr"))'
                                  '.map(r => r.cells[0].textContent)')
        log(f'transfer tab: sent with {", ".join(codecs)}; latency bars shown')
        # the pre-encoded examples: pick one (picking decodes it in the kernel), then press decode; check the numbers
        from selenium.webdriver.support.ui import Select
        open_tab(d, 'Pre-encoded')
        sel = Select(wait_for(d, 'the example picker', lambda: d.find_elements(By.CSS_SELECTOR, '.caelab-precoded-picker select'), 30)[0])
        labels = [o.text for o in sel.options]
        if not labels: raise Failed(f'the Pre-encoded tab offers no examples ({d.execute_script(JS_PRECODED)["message"]})')
        shown = labels.index(sel.first_selected_option.text)
        rowed = [i for i in range(len(labels)) if not labels[i].endswith('(no results row)')]   # with committed numbers
        if not rowed: raise Failed(f'no pre-encoded example has a row in results.csv: {labels}')
        pick = next((i for i in rowed if i > shown), rowed[0])   # another one than the one shown if it can: picking it decodes it
        file = precoded_file(labels[pick])
        d.execute_script(JS_MESSAGES)
        t2 = time.time()
        if pick != shown: sel.select_by_index(pick)
        else: d.find_element(By.CSS_SELECTOR, '.caelab-precoded-decode').click()   # it is picked already
        pre = check_precoded(wait_decoded(d, file, args.decode_timeout), file, labels[pick])
        log(f'pre-encoded tab: picked {labels[pick]!r}; decoded {file} in {time.time() - t2:.1f} s: {pre}')
        d.execute_script(JS_MESSAGES)
        d.find_element(By.CSS_SELECTOR, '.caelab-precoded-decode').click()
        again = check_precoded(wait_decoded(d, file, args.decode_timeout), file, labels[pick])
        if (again['bytes'], again['psnr']) != (pre['bytes'], pre['psnr']): raise Failed(f'decoding {file} again gave {again}, not {pre}')
        log(f'pre-encoded tab: the decode button decoded {file} again, the same numbers')
        st3 = d.execute_script(JS_RENDERED)
        errs = d.execute_script('return Array.from(document.querySelectorAll(".caelab-error")).map(e => e.textContent)')
        if errs or st3['traceback']: raise Failed(f'the dashboard shows an error: {errs or "a traceback"}')
        return dict(date=datetime.datetime.now(datetime.timezone.utc).strftime('%Y-%m-%d %H:%M UTC'),
                    browser=f'Chromium {d.capabilities.get("browserVersion")} headless', notebook=str(nb.relative_to(ROOT)),
                    sliders=st['sliders'], table_rows=st['rows'], pictures=st['pictures'], before=before, after=after,
                    store_key_prefix=key[:4], transfer_codecs=codecs, precoded=pre,
                    latency_s=round(latency, 3), driver_wall_s=round(wall, 3), load_s=round(load_s, 1), shot=str(shot))
    except Failed: raise
    except Exception as e:
        raise Failed(f'{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ""}') from e
    finally:
        if d is not None:
            try: d.quit()
            except Exception: pass
        stop_voila(p)
        if log_file is not None: log_file.close()
        run.workdir = work


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument('--notebook', default='nbs/class_dashboard.ipynb', help='notebook to serve (default: %(default)s)')
    ap.add_argument('--timeout', type=float, default=150, help='seconds to wait for the dashboard (default: %(default)s)')
    ap.add_argument('--decode-timeout', type=float, default=240,
                    help='seconds to wait for a pre-encoded example to be decoded (default: %(default)s)')
    ap.add_argument('--no-save', action='store_true', help='do not write results/ and nbs/images/')
    ap.add_argument('--out', help='write the screenshot and JSON to this folder instead of results/ and nbs/images/ (for CI)')
    args = ap.parse_args(argv)
    t = time.time()
    try: res = run(args)
    except Failed as e:
        print(f'BROWSER TEST FAILED: {e}', flush=True)
        vl = getattr(run, 'workdir', None)
        if vl is not None and (vl / 'voila.log').exists():
            print('--- last lines of the voila log ---'); print('\n'.join((vl / 'voila.log').read_text(errors='replace').splitlines()[-40:]))
        if vl is not None: shutil.rmtree(vl, ignore_errors=True)
        return 1
    shot = Path(res.pop('shot'))
    if args.out:
        out = Path(args.out); out.mkdir(parents=True, exist_ok=True)
        shutil.copy(shot, out / 'dashboard_screenshot.png')
        (out / 'dashboard_browser.json').write_text(json.dumps(res, indent=1) + '\n')
        log(f'saved {out}/dashboard_screenshot.png and {out}/dashboard_browser.json')
    elif not args.no_save:
        (ROOT / 'results').mkdir(exist_ok=True)
        shutil.copy(shot, ROOT / 'results' / 'dashboard_screenshot.png')
        shutil.copy(shot, ROOT / 'nbs' / 'images' / 'dashboard_screenshot.png')
        (ROOT / 'results' / 'dashboard_browser.json').write_text(json.dumps(res, indent=1) + '\n')
        log('saved results/dashboard_screenshot.png, nbs/images/dashboard_screenshot.png, results/dashboard_browser.json')
    shutil.rmtree(getattr(run, 'workdir', ''), ignore_errors=True)
    print(f'BROWSER TEST PASSED in {time.time() - t:.0f} s: dashboard rendered in {res["load_s"]} s; JPEG slider '
          f'{res["before"]["setting"]} -> {res["after"]["setting"]}: {res["before"]["bytes"]:,} -> {res["after"]["bytes"]:,} '
          f'bytes, PSNR {res["before"]["psnr"]} -> {res["after"]["psnr"]} dB; key press -> updated table '
          f'{res["latency_s"]:.3f} s; pre-encoded {res["precoded"]["file"]}: {res["precoded"]["bytes"]:,} bytes, '
          + (f'{res["precoded"]["psnr"]:.4f} dB (committed {res["precoded"]["committed_psnr"]:.4f})' if res['precoded']['psnr'] is not None
             else f'committed {res["precoded"]["committed_psnr"]:.4f} dB (no original here)'), flush=True)
    return 0


if __name__ == '__main__':
    sys.exit(main())
