// Baileys side of `staylinked bench scale`: N Baileys 6.7.21 sockets restored from multi-file
// auth state, in ONE Node process, logging in to `staylinked sim`, all started at once
// (fireInitQueries: false, history sync off). Ready = `open` + the offline marker
// (`receivedPendingNotifications`). RSS per socket = (RSS at N - RSS at 0) / N after the idle settle.
//
// Usage (the bench runs this; it can also run alone against `staylinked sim`):
//   node scripts/interop/bench-baileys.mjs --ws-url ws://127.0.0.1:P/ws/chat \
//        --admin-url http://127.0.0.1:P/admin --tenants 1000 --idle-secs 30 --phone-prefix 1556 --dir /tmp/auth
// Prints one JSON line on stdout. Exits non-zero on a setup failure.
//
// Phase 1 (this process): provision each account without a QR round trip. The simulator links a
// companion with the fresh creds' public keys (POST /admin/phones/{phone}/companions) and answers
// with the pair-success contents; Baileys' own configureSuccessfulPairing finishes the pairing
// locally, and useMultiFileAuthState writes creds.json, exactly as after a scan.
// Phase 2 (a fresh Node process, --expose-gc): measure the restore.
import { spawn } from 'node:child_process';
import { mkdirSync, rmSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

const t_boot = performance.now();
const args = process.argv.slice(2);
const mode = args[0] === 'measure' ? 'measure' : 'provision';
const opt = (name, dflt) => {
  const i = args.indexOf(`--${name}`);
  return i >= 0 && i + 1 < args.length ? args[i + 1] : dflt;
};
const WS_URL = opt('ws-url');
const ADMIN_URL = opt('admin-url');
const N = Number(opt('tenants', '1000'));
const IDLE_S = Number(opt('idle-secs', '30'));
const PREFIX = opt('phone-prefix', '1556');
const DIR = opt('dir', '/tmp/staylinked-bench-baileys');
const TIMEOUT_MS = Number(opt('timeout-secs', '180')) * 1000;
if (!WS_URL || (mode === 'provision' && !ADMIN_URL)) {
  console.error('usage: bench-baileys.mjs --ws-url URL --admin-url URL [--tenants N] [--idle-secs S] [--dir D]');
  process.exit(2);
}
const log = (...a) => console.error('[bench-baileys]', ...a);
const phone = (i) => `${PREFIX}${String(i).padStart(7, '0')}`;
const dirOf = (i) => join(DIR, `t${String(i).padStart(5, '0')}`);
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
const kib = (bytes) => Math.round(bytes / 1024);

const baileys = await import('baileys');
const t_imported = performance.now();
const makeWASocket = baileys.default;
const { useMultiFileAuthState, configureSuccessfulPairing } = baileys;

// Runs `fn(i)` for i in 0..n, `width` at a time.
async function pool(n, width, fn) {
  let next = 0;
  const worker = async () => { while (next < n) { const i = next++; await fn(i); } };
  await Promise.all(Array.from({ length: Math.min(width, n) }, worker));
}

async function provision() {
  rmSync(DIR, { recursive: true, force: true });
  mkdirSync(DIR, { recursive: true });
  const t = performance.now();
  await pool(N, 32, async (i) => {
    const { state, saveCreds } = await useMultiFileAuthState(dirOf(i));
    const creds = state.creds;
    const b64 = (b) => Buffer.from(b).toString('base64');
    const r = await fetch(`${ADMIN_URL}/phones/${phone(i)}/companions`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({
        noise_pub: b64(creds.noiseKey.public),
        identity_pub: b64(creds.signedIdentityKey.public),
        adv_secret: creds.advSecretKey,
        name: 'Bench',
        prekeys: 50,
      }),
    });
    const p = await r.json();
    if (r.status !== 201) throw new Error(`provision ${phone(i)}: ${r.status} ${JSON.stringify(p)}`);
    // The pair-success stanza the phone would have sent, handed to Baileys' own pairing code.
    const content = [
      { tag: 'device-identity', attrs: {}, content: Buffer.from(p.device_identity, 'base64') },
      { tag: 'platform', attrs: { name: p.platform } },
      { tag: 'device', attrs: { jid: p.device_jid, lid: p.device_lid } },
    ];
    if (p.business_name) content.push({ tag: 'biz', attrs: { name: p.business_name } });
    const stanza = { tag: 'iq', attrs: { id: `prov-${i}`, type: 'set', xmlns: 'md' }, content: [{ tag: 'pair-success', attrs: {}, content }] };
    const { creds: update } = configureSuccessfulPairing(stanza, creds);
    Object.assign(creds, update);
    await saveCreds();
  });
  log(`provisioned ${N} auth states in ${Math.round(performance.now() - t)} ms`);
  const self = fileURLToPath(import.meta.url);
  const child = spawn(process.execPath, ['--expose-gc', self, 'measure', '--ws-url', WS_URL, '--tenants', String(N),
    '--idle-secs', String(IDLE_S), '--dir', DIR, '--timeout-secs', String(TIMEOUT_MS / 1000)],
  { stdio: ['ignore', 'pipe', 'inherit'] });
  let out = '';
  child.stdout.on('data', (d) => { out += d; });
  const code = await new Promise((r) => child.on('exit', r));
  process.stdout.write(out);
  rmSync(DIR, { recursive: true, force: true });
  process.exit(code ?? 1);
}

function spread(times) {
  const t = [...times].sort((a, b) => a - b);
  const pick = (p) => (t.length ? t[Math.min(t.length, Math.max(1, Math.ceil(p * t.length))) - 1] : 0);
  return { count: t.length, p50_ms: pick(0.5), p99_ms: pick(0.99), all_ms: t.length ? t[t.length - 1] : 0 };
}

async function measure() {
  const logger = (await import('pino')).default({ level: 'silent' });
  const gc = globalThis.gc ?? (() => {});
  gc();
  await sleep(200);
  gc();
  const m0 = process.memoryUsage();
  const opened = [], ready = [];
  let failed = 0;
  const sockets = [];
  const t0 = performance.now();
  const done = new Promise((resolveAll) => {
    let settled = 0;
    const settle = () => { if (++settled === N) resolveAll(); };
    for (let i = 0; i < N; i++) {
      (async () => {
        const { state, saveCreds } = await useMultiFileAuthState(dirOf(i));
        const sock = makeWASocket({
          auth: state,
          logger,
          waWebSocketUrl: WS_URL,
          browser: ['Ubuntu', 'Chrome', '22.04'],
          printQRInTerminal: false,
          fireInitQueries: false,
          syncFullHistory: false,
          shouldSyncHistoryMessage: () => false,
          markOnlineOnConnect: false,
        });
        sockets.push(sock);
        sock.ev.on('creds.update', saveCreds);
        let isOpen = false, drained = false, over = false;
        const check = () => {
          if (!over && isOpen && drained) { over = true; ready.push(performance.now() - t0); settle(); }
        };
        sock.ev.on('connection.update', (u) => {
          if (u.qr && !over) { over = true; failed++; settle(); }
          if (u.connection === 'open' && !isOpen) { isOpen = true; opened.push(performance.now() - t0); }
          if (u.receivedPendingNotifications) drained = true;
          if (u.connection === 'close' && !over) { over = true; failed++; settle(); }
          check();
        });
      })().catch((e) => { log('socket setup failed', e?.message); failed++; settle(); });
    }
  });
  const timedOut = await Promise.race([done.then(() => false), sleep(TIMEOUT_MS).then(() => true)]);
  const t_ready = performance.now() - t0;
  log(`ready ${ready.length}/${N} (failed ${failed}${timedOut ? ', timed out' : ''}) in ${Math.round(t_ready)} ms; idling ${IDLE_S} s`);
  await sleep(IDLE_S * 1000);
  gc();
  await sleep(200);
  gc();
  const m1 = process.memoryUsage();
  const stillOpen = sockets.filter((s) => s.ws?.isOpen).length;
  const pkg = JSON.parse(readFileSync(join(fileURLToPath(new URL('.', import.meta.url)), 'node_modules/baileys/package.json'), 'utf8'));
  const report = {
    baileys_version: pkg.version,
    node_version: process.version,
    sockets: N,
    open: spread(opened),
    ready: spread(ready),
    failed: failed + (timedOut ? N - ready.length - failed : 0),
    still_open_after_idle: stillOpen,
    import_ms: t_imported - t_boot,
    rss_baseline_kib: kib(m0.rss),
    rss_n_kib: kib(m1.rss),
    rss_per_socket_kib: N ? (m1.rss - m0.rss) / 1024 / N : 0,
    heap_per_socket_kib: N ? (m1.heapUsed - m0.heapUsed) / 1024 / N : 0,
    idle_s: IDLE_S,
    gc_before_readings: typeof globalThis.gc === 'function',
  };
  process.stdout.write(JSON.stringify(report) + '\n');
  for (const s of sockets) { try { s.end(undefined); } catch {} }
  await sleep(100);
  process.exit(0);
}

if (mode === 'measure') await measure(); else await provision();
