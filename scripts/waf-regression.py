#!/usr/bin/env python3
"""Runs the OWASP CRS 3.3.4 regression suite (FTW YAML) through Porter's WAF, detect mode, PL 4.

Usage: waf-regression.py REGRESSION_DIR [--porter PATH] [--only SUBSTRING] [--verbose] [--list]

In a temporary dir (removed at the end) it starts an upstream (200 "ok" to anything) and
`porter serve --waf-rules DIR`, DIR holding a crs-setup.conf with the suite's settings (its
README's rule 900005; COMBINED_FILE_SIZES=65535 as CRS 3.3.4's CI had) and `rules` -> Debian's
CRS; sites localhost and example.com get `--waf detect --waf-paranoia 4`. Each case's request is
built as FTW 1.3, the suite's runner, builds it (data lines joined with CRLF; unless stop_magic,
a default form Content-Type, form data re-encoded, a Content-Length), sent to Porter's HTTP port
(dest_addr/port ignored) from a loopback address of its own, and the rule ids Porter appended
to DATA_DIR/waf.log are compared with log_contains / no_log_contains. Cases with only status /
expect_error are counted apart; one Porter answered itself with no WAF log line is "refused
before the WAF". Exits 1 when under 95 % of the cases that reached the WAF pass. --list only
parses the folder (and builds every request). ModSecurity's recommended base rules (200000-
200003: XML/JSON body processors, body errors) are Porter's own, so crs-setup.conf has none.
"""
import argparse, base64, json, os, re, shutil, signal, socket, subprocess, sys, tempfile
import threading, time
from collections import defaultdict
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qsl, unquote, urlencode

import yaml

CRS_RULES = '/usr/share/modsecurity-crs/rules'
SETUP = '''# The CRS regression suite's settings (README.upstream.md; COMBINED_FILE_SIZES from its CI)
Include /etc/modsecurity/crs/crs-setup.conf
SecAction "id:900005,phase:1,nolog,pass,ctl:ruleRemoveById=910000,setvar:tx.crs_validate_utf8_encoding=1,setvar:tx.arg_name_length=100,setvar:tx.arg_length=400"
SecAction "id:900006,phase:1,nolog,pass,setvar:tx.combined_file_sizes=65535"
'''
FORM = 'application/x-www-form-urlencoded'
MARK = 'X-Waf-Regression-Upstream'  # our upstream's header: the answer went through Porter
SITES = ('localhost', 'example.com')
ANSWER_WAIT, LOG_WAIT, START_WAIT = 5.0, 1.0, 60.0
ENV = {k: v for k, v in os.environ.items() if not k.startswith('PORTER_')}  # flags only


def ids(pattern):
    """The rule ids an FTW log pattern names (`id "942100"`, also `id:921140`)."""
    return set(re.findall(r'\d{6}', str(pattern))) if pattern is not None else set()


def load_cases(root, only):
    """Every stage of every enabled test, in file order; and how many were disabled."""
    cases, disabled = [], 0
    for d, dirs, files in sorted(os.walk(root)):
        dirs.sort()
        for name in sorted(f for f in files if f.endswith('.yaml')):
            with open(os.path.join(d, name), encoding='utf-8') as f:
                doc = yaml.safe_load(f)
            folder = os.path.relpath(d, root) if d != root else name
            for test in doc.get('tests') or []:
                if not (doc.get('meta') or {}).get('enabled', True) or test.get('enabled') is False:
                    disabled += 1  # as FTW: a file's meta.enabled false leaves its tests out
                    continue
                stages = test.get('stages') or []
                for n, st in enumerate(stages, 1):
                    st = st.get('stage', st)
                    title = str(test.get('test_title', '?')) + (f'/{n}' if len(stages) > 1 else '')
                    if not only or any(only in s for s in (folder, name, title)):
                        cases.append(dict(folder=folder, file=name, title=title,
                                          input=st.get('input') or {}, output=st.get('output') or {}))
    return cases, disabled


def build_request(inp):
    """The bytes FTW 1.3 sends for a stage's input (ftw/ruleset.py Input, ftw/http.py)."""
    if inp.get('encoded_request'):
        return base64.b64decode(inp['encoded_request'])
    if inp.get('raw_request') is not None:
        return str(inp['raw_request']).encode().decode('unicode_escape').encode('utf-8', 'surrogatepass')
    headers = []
    for k, v in (inp.get('headers') or {}).items():
        headers += [(str(k), str(one)) for one in (v if isinstance(v, list) else [v])]
    data = inp.get('data') or ''
    data = '\r\n'.join(map(str, data)) if isinstance(data, list) else str(data)
    names = {k.lower() for k, _ in headers}
    if data and not inp.get('stop_magic', False):
        if 'content-type' not in names:
            headers.append(('Content-Type', FORM))
        if next(v for k, v in headers if k.lower() == 'content-type') == FORM and unquote(data) == data:
            pairs = parse_qsl(data)  # FTW's magic (blank values and words without '=' go)
            data = urlencode(pairs) if pairs else data
        if 'content-length' not in names and 'transfer-encoding' not in names:
            headers.append(('Content-Length', str(len(data.encode('utf-8', 'surrogatepass')))))
    head = '%s %s %s\r\n' % (inp.get('method', 'GET'), inp.get('uri', '/'), inp.get('version', 'HTTP/1.1'))
    head += ''.join(f'{k}: {v}\r\n' for k, v in headers)
    return (head + '\r\n' + data).encode('utf-8', 'surrogatepass')


def final_response(buf):
    """(status, head, body) of the first non-1xx response in buf; None while its head is partial."""
    while (end := buf.find(b'\r\n\r\n')) >= 0:
        head, body = buf[:end].decode('latin-1'), buf[end + 4:]
        m = re.match(r'HTTP/\S+ (\d{3})', head)
        status = int(m.group(1)) if m else 0
        if not 100 <= status < 200 or status == 101:
            return status, head, body
        buf = body  # an interim answer (100 Continue): the final one follows
    return None


def complete(buf, method):
    if (final := final_response(buf)) is None:
        return False
    status, head, body = final
    if method == 'HEAD' or status in (101, 204, 304):
        return True
    if cl := re.search(r'(?im)^content-length:\s*(\d+)', head):
        return len(body) >= int(cl.group(1))
    if re.search(r'(?im)^transfer-encoding:.*chunked', head):
        return body.endswith(b'0\r\n\r\n')
    return False  # framed by the close


def exchange(port, source_ip, request, method):
    """Sends one request; returns (final status or None, whether our upstream answered, raw answer)."""
    buf, deadline = b'', time.monotonic() + ANSWER_WAIT
    try:
        with socket.create_connection(('127.0.0.1', port), ANSWER_WAIT, (source_ip, 0)) as s:
            try:
                s.sendall(request)
            except OSError:
                pass  # Porter may answer and close before it has read it all
            while time.monotonic() < deadline and not complete(buf, method):
                s.settimeout(max(0.01, deadline - time.monotonic()))
                if not (chunk := s.recv(65536)):
                    break
                buf += chunk
    except OSError:
        pass  # refused, reset or timed out: what came so far is the answer
    if (final := final_response(buf)) is None:
        return None, False, buf
    return final[0], re.search(rf'(?im)^{MARK}:', final[1]) is not None, buf


class WafLog:
    """The JSON lines Porter appends to its WAF log, read as they come."""

    def __init__(self, path):
        self.path, self.pos, self.used = path, 0, set()

    def lines_for(self, ip, wait):
        """New lines, but not another of our sources' (late lines of a case that timed out);
        polls up to `wait` seconds while there is none."""
        self.used.add(ip)
        mine, deadline = [], time.monotonic() + wait
        while True:
            try:
                with open(self.path, 'rb') as f:
                    f.seek(self.pos)
                    chunk = f.read()
            except FileNotFoundError:
                chunk = b''
            chunk = chunk[:chunk.rfind(b'\n') + 1]  # a line still being written waits
            self.pos += len(chunk)
            for raw in chunk.splitlines():
                try:
                    line = json.loads(raw)
                except ValueError:
                    print(f'waf.log: not JSON: {raw[:200]!r}', file=sys.stderr)
                    continue
                m = re.search(r'\d+\.\d+\.\d+\.\d+', str(line.get('client', '')))
                if not (m and m.group(0) != ip and m.group(0) in self.used):
                    mine.append(line)
            if mine or time.monotonic() >= deadline:
                return mine
            time.sleep(0.02)


class Upstream(BaseHTTPRequestHandler):
    """Answers 200 "ok" to any method once it has read the body; one request a connection."""
    protocol_version, timeout = 'HTTP/1.1', 10

    def any_method(self):
        try:
            if 'chunked' in self.headers.get('Transfer-Encoding', '').lower():
                while size := int(self.rfile.readline(65537).split(b';')[0].strip() or b'0', 16):
                    self.rfile.read(size + 2)
                while self.rfile.readline(65537) not in (b'\r\n', b'\n', b''):
                    pass  # trailers
            else:
                self.rfile.read(int(self.headers.get('Content-Length') or 0))
        except (ValueError, OSError):
            pass
        self.send_response(200)
        for k, v in (('Content-Type', 'text/plain'), ('Content-Length', '2'),
                     ('Connection', 'close'), (MARK, '1')):
            self.send_header(k, v)
        self.end_headers()
        if self.command != 'HEAD':
            self.wfile.write(b'ok')
        self.close_connection = True

    def __getattr__(self, name):
        if name.startswith('do_'):
            return self.any_method
        raise AttributeError(name)

    def log_message(self, *args):
        pass


def free_port():
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0))
        return s.getsockname()[1]


def porter_log(tmp):
    with open(os.path.join(tmp, 'porter.log'), errors='replace') as f:
        return ''.join(f.readlines()[-30:])


def start(args, tmp, live):
    """The upstream, Porter (each put in `live` once started), the sites; returns (port, log)."""
    rules, data = os.path.join(tmp, 'rules'), os.path.join(tmp, 'data')
    os.makedirs(rules)
    with open(os.path.join(rules, 'crs-setup.conf'), 'w') as f:
        f.write(SETUP)
    os.symlink(CRS_RULES, os.path.join(rules, 'rules'))
    server = live['server'] = ThreadingHTTPServer(('127.0.0.1', 0), Upstream)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    http = free_port()
    with open(os.path.join(tmp, 'porter.log'), 'wb') as out:
        live['porter'] = subprocess.Popen(
            [args.porter, 'serve', '--data-dir', data, '--http', f'127.0.0.1:{http}',
             '--https', f'127.0.0.1:{free_port()}', '--admin', f'127.0.0.1:{free_port()}',
             '--waf-rules', rules],
            stdout=out, stderr=subprocess.STDOUT, env=ENV, start_new_session=True)  # we stop it
    cli = lambda *a: subprocess.run([args.porter, '--data-dir', data, *a], env=ENV, text=True,
                                    capture_output=True, timeout=30)
    deadline = time.monotonic() + START_WAIT
    while cli('site', 'list').returncode:
        if live['porter'].poll() is not None or time.monotonic() > deadline:
            sys.exit(f'porter serve exited or not ready in {START_WAIT:.0f} s:\n{porter_log(tmp)}')
        time.sleep(0.2)
    for site in SITES:
        for cmd in (('add', site, '--upstream', f'127.0.0.1:{server.server_address[1]}', '--no-acme'),
                    ('update', site, '--waf', 'detect', '--waf-paranoia', '4')):
            if (r := cli('site', *cmd)).returncode:
                sys.exit(f'porter site {" ".join(cmd)}: failed\n{r.stdout}{r.stderr}')
    log = WafLog(os.path.join(data, 'waf.log'))
    for n, site in enumerate(SITES, 1):  # until an obvious XSS is logged: the WAF is on
        ip, deadline = f'127.99.0.{n}', time.monotonic() + 30
        probe = f'GET /?q=%3Cscript%3Ealert(1)%3C/script%3E HTTP/1.1\r\nHost: {site}\r\n\r\n'
        while not log.lines_for(ip, 0.5 if exchange(http, ip, probe.encode(), 'GET')[0] else 0):
            if time.monotonic() > deadline:
                sys.exit(f'{site}: no WAF log line for an XSS probe in 30 s\n{porter_log(tmp)}')
            time.sleep(0.2)
    return http, log


def judge(case, status, upstream, raw, lines):
    """Sets the case's status, matched rule ids and result."""
    out = case['output']
    want, forbid = ids(out.get('log_contains')), ids(out.get('no_log_contains'))
    matched = {str(r.get('id')) for line in lines for r in line.get('rules', [])}
    case.update(status=status, matched=matched)
    if not want and not forbid:  # status-only: what can be checked, the status or no answer
        codes = out.get('status') if isinstance(out.get('status'), list) else [out.get('status')]
        case['result'] = 'ok' if (not raw if out.get('expect_error') else status in codes) else 'bad'
    elif not lines and not upstream:
        case['result'] = 'refused'  # Porter answered itself (or not at all): no WAF log line
    else:
        case['result'] = 'passed' if want <= matched and not forbid & matched else 'failed'


def run(args, cases, tmp):
    live = {}
    try:
        port, log = start(args, tmp, live)
        for n, case in enumerate(cases, 1):
            inp, ip = case['input'], f'127.{100 + n // 65536}.{n // 256 % 256}.{n % 256}'
            status, upstream, raw = exchange(port, ip, build_request(inp), str(inp.get('method', 'GET')))
            wait = LOG_WAIT if ids(case['output'].get('log_contains')) and (upstream or status is None) else 0
            judge(case, status, upstream, raw, log.lines_for(ip, wait))
            if args.verbose:
                print(f"{case['result']:7} {case['title']:24} status {status} "
                      f"matched {sorted(case['matched'])}", flush=True)
    finally:
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # a second Ctrl-C must not skip this
        if (porter := live.get('porter')) and porter.poll() is None:
            porter.send_signal(signal.SIGTERM)
            try:
                porter.wait(30)
            except subprocess.TimeoutExpired:
                porter.kill()
                porter.wait()
        if 'server' in live:
            live['server'].shutdown()
            live['server'].server_close()


def table(rows, keys, extra=None):
    print(f"{'rule file':48}" + ''.join(f'{k:>12}' for k in keys) + (f"{'pass %':>13}" if extra else ''))
    total = defaultdict(int)
    for k, v in (kv for r in rows.values() for kv in r.items()):
        total[k] += v
    for folder, r in sorted(rows.items()) + [('TOTAL', total)]:
        print(f'{folder:48}' + ''.join(f'{r[k]:12}' for k in keys) + (extra(r) if extra else ''))
    return total


def expected(out):
    return 'an error (no answer)' if out.get('expect_error') else f"status {out.get('status')}"


def report(cases, disabled, verbose):
    rows = defaultdict(lambda: defaultdict(int))
    for c in cases:
        rows[c['folder']][c['result']] += 1
        rows[c['folder']]['cases'] += c['result'] in ('passed', 'failed', 'refused')
    rate = lambda r: 100 * r['passed'] / (r['passed'] + r['failed']) if r['passed'] + r['failed'] else 100.0
    print()
    total = table(rows, ('cases', 'passed', 'failed', 'refused'), lambda r: f'{rate(r):11.1f} %')
    print(f"status-only cases (not above): {total['ok'] + total['bad']}, as expected {total['ok']}; "
          f'disabled cases left out: {disabled}')
    for label, result in (('refused before the WAF', 'refused'), ('failed', 'failed'),
                          ('status-only, not as expected', 'bad')):
        shown = [c for c in cases if c['result'] == result]
        print(f'\n{label}: {len(shown)}' + (', the first 100' if len(shown) > 100 and not verbose else ''))
        for c in shown if verbose else shown[:100]:
            no = sorted(ids(c['output'].get('no_log_contains')))
            print(f"  {c['folder']}/{c['file']} {c['title']}: status {c['status']}, "
                  f"want {sorted(ids(c['output'].get('log_contains')))}{' and not ' + str(no) if no else ''}"
                  f", matched {sorted(c['matched'])}"
                  + (f", expected {expected(c['output'])}" if result == 'bad' else ''))
    if total['passed'] + total['failed'] and rate(total) < 95:
        print(f'\npass rate {rate(total):.1f} % is below 95 %')
        return 1
    return 0


def list_cases(cases, disabled, verbose):
    rows = defaultdict(lambda: defaultdict(int))
    for c in cases:
        r, inp, out = rows[c['folder']], c['input'], c['output']
        r['cases'] += 1
        r['encoded'] += 'encoded_request' in inp
        r['raw'] += 'raw_request' in inp
        r['stop_magic'] += bool(inp.get('stop_magic'))
        r['status-only'] += 'log_contains' not in out and 'no_log_contains' not in out
        request = build_request(inp)  # every case must build
        if verbose:
            print(f"{c['title']:24} {request[:200]!r}")
    table(rows, ('cases', 'encoded', 'raw', 'stop_magic', 'status-only'))
    print(f'disabled cases left out: {disabled}')


def interrupted(*_):
    raise KeyboardInterrupt


def main():
    p = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    p.add_argument('regression_dir')
    p.add_argument('--porter', help='default: ./target/release/porter, else ./target/debug/porter')
    p.add_argument('--only', help='only the cases whose folder, file name or title contains this')
    p.add_argument('--verbose', action='store_true', help='each case as it runs; every failure')
    p.add_argument('--list', action='store_true', help='only parse the folder and count the cases')
    args = p.parse_args()
    cases, disabled = load_cases(args.regression_dir, args.only)
    if args.list:
        return list_cases(cases, disabled, args.verbose)
    args.porter = os.path.abspath(args.porter or next(
        (b for b in ('./target/release/porter', './target/debug/porter') if os.path.exists(b)), 'porter'))
    if not os.access(args.porter, os.X_OK):
        sys.exit(f'{args.porter}: no Porter binary there (see --porter)')
    signal.signal(signal.SIGTERM, interrupted)
    signal.signal(signal.SIGINT, interrupted)
    tmp, code = tempfile.mkdtemp(prefix='waf-regression-'), 130
    try:
        run(args, cases, tmp)
        code = 0
    except KeyboardInterrupt:
        print('interrupted: the report covers the cases run so far', file=sys.stderr)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    verdict = report([c for c in cases if 'result' in c], disabled, args.verbose)
    return code or verdict


if __name__ == '__main__':
    sys.exit(main())
