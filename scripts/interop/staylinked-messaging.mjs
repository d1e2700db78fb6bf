// Interop check (issue 7 item 5): a staylinked tenant and a Baileys 6.7.21 companion (its own
// libsignal) exchange end-to-end messages through `staylinked sim`, across a restart of the
// gateway process.
//   account A: a staylinked tenant (`staylinked run`, embedded store in a temp dir, linked by QR
//              through the simulator's admin scan); it sends with POST /v1/tenants/{id}/messages,
//              and receives through signed webhooks served by this script on 127.0.0.1.
//   account B: Baileys companions B1 and B2 (QR pairing through the admin API).
// Scenario: 1:1 tenant <-> B1 both ways (the tenant's first contact is a pkmsg, then msg), a group
// message each way (group created through the admin API; Baileys learns it from w:gp2), B2 links,
// SIGTERM of the gateway and a start from the same store (no QR, still one device on the phone),
// then B2 -> tenant (Baileys' first contact: a libsignal pkmsg the restarted tenant decrypts),
// 1:1 both ways (fan-out to B1 and B2) and the group both ways again.
// Checks: every message arrives exactly once (by id) with its text on the other side; the tenant
// sees its messages delivered; every webhook carries a valid HMAC signature; Baileys reports no
// undecryptable message (CIPHERTEXT stub); the simulator counted 0 retry receipts and 0 phone
// decrypt failures; the whole run takes at most OVERALL_MS.
// Usage: node scripts/interop/staylinked-messaging.mjs [path/to/staylinked]
// Exits 0 on success; on any miss prints the failed step (and the gateway's log tail) and exits 1.
// Child processes (simulator, gateway) are killed on every exit path.
//
// Participants share the interface of messaging.mjs:
//   { name, phone, jid, start(), stop(), send(toJid, text) -> id, received[], updates[] }
// received[] holds { id, chat, fromMe, sender, text }; updates[] holds { id, status }.
import { spawn } from 'node:child_process';
import { createHmac, timingSafeEqual, randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync, openSync, closeSync, readFileSync } from 'node:fs';
import { createServer as createHttpServer } from 'node:http';
import { createServer as createNetServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import pino from 'pino';
import makeWASocket, { useMultiFileAuthState, DisconnectReason } from 'baileys';

const BIN = process.argv[2] || process.env.STAYLINKED_BIN || 'target/debug/staylinked';
const PHONE_T = '15550000021'; // the staylinked tenant's account
const PHONE_B = '15550000022'; // the Baileys companion's account
const TENANT = 'interop';
const API_KEY = randomBytes(16).toString('hex');
const OVERALL_MS = 90_000;
const STEP_MS = 20_000;
const CIPHERTEXT_STUB = 2; // WAMessageStubType.CIPHERTEXT: Baileys could not decrypt
// Baileys 6.7.21 quirk: a 1:1 send caches the peer's device list *without* device 0 (it adds the
// phone separately), and a later group send reads that cache, so the peer's phone gets the skmsg
// but no SKDM, fails with "no sender key" and sends a retry receipt. Not a staylinked matter; a
// cache that never hits makes Baileys ask usync for every send (device 0 included for groups).
const NO_DEVICE_CACHE = { get: () => undefined, set: () => true, del: () => 0, flushAll: () => {} };

const out = console.log.bind(console);
const err = console.error.bind(console);
if (!process.env.MESSAGING_VERBOSE) {
  // libsignal logs session churn through console.*; keep our own lines only.
  for (const k of ['log', 'info', 'warn', 'error', 'debug', 'trace']) console[k] = () => {};
}
const t0 = Date.now();
const log = (...a) => out(`[staylinked-messaging +${((Date.now() - t0) / 1000).toFixed(1)}s]`, ...a);
let step = 'start simulator';

// ------------------------------------------------------------------ processes and cleanup
const work = mkdtempSync(join(tmpdir(), 'staylinked-interop-'));
const children = new Set();
const participants = [];
let finished = false;
let gatewayLog = null;

const killChildren = (signal = 'SIGKILL') => {
  for (const c of children) {
    if (c.exitCode === null && c.signalCode === null) { try { c.kill(signal); } catch {} }
  }
};
const cleanup = () => {
  for (const p of participants) { try { p.sock?.end(undefined); } catch {} }
  killChildren('SIGKILL');
  try { webhookServer?.close(); } catch {}
  if (process.env.KEEP_WORK) err(`[staylinked-messaging] kept ${work}`);
  else rmSync(work, { recursive: true, force: true });
};
const tail = (path, n = 40) => {
  try { return readFileSync(path, 'utf8').split('\n').slice(-n).join('\n'); } catch { return ''; }
};
const fail = (msg) => {
  if (finished) return;
  finished = true;
  err(`[staylinked-messaging] FAILED at step "${step}" after ${((Date.now() - t0) / 1000).toFixed(1)} s: ${msg}`);
  if (gatewayLog) err(`--- gateway log tail (${gatewayLog}) ---\n${tail(gatewayLog)}`);
  err(`--- simulator log tail ---\n${tail(join(work, 'sim.log'), 20)}`);
  cleanup();
  process.exit(1);
};
process.on('exit', () => killChildren('SIGKILL'));
for (const sig of ['SIGINT', 'SIGTERM']) process.on(sig, () => fail(`interrupted by ${sig}`));
process.on('unhandledRejection', (e) => fail(`unhandled rejection: ${e?.stack || e}`));
const overall = setTimeout(() => fail(`timed out after ${OVERALL_MS / 1000} s`), OVERALL_MS);

const spawnChild = (name, args, env, logFile) => {
  const fd = openSync(logFile, 'a');
  const c = spawn(BIN, args, { env: { ...env, NO_COLOR: '1' }, stdio: ['ignore', 'pipe', fd] });
  closeSync(fd);
  c.name = name;
  children.add(c);
  c.exited = new Promise((resolve) => c.once('exit', (code, signal) => {
    children.delete(c);
    resolve({ code, signal });
  }));
  return c;
};

const sim = spawnChild('simulator', ['sim', '--listen', '127.0.0.1:0'],
  { ...process.env, RUST_LOG: process.env.SIM_LOG || 'warn' }, join(work, 'sim.log'));
sim.exited.then(({ code, signal }) => { if (!finished) fail(`simulator exited early (code ${code}, signal ${signal})`); });
const ready = await new Promise((resolve) => {
  createInterface({ input: sim.stdout }).once('line', (l) => resolve(JSON.parse(l)));
});
log('simulator ready', ready.ws_url);

// ------------------------------------------------------------------ small HTTP helpers
const call = async (base, method, path, body, headers = {}) => {
  const r = await fetch(base + path, {
    method,
    headers: { 'content-type': 'application/json', ...headers },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const text = await r.text();
  let json = null;
  try { json = text ? JSON.parse(text) : null; } catch { json = text; }
  return { status: r.status, json };
};
const admin = (method, path, body) => call(ready.admin_url, method, path, body);
const adminOk = async (method, path, body, want = [200, 201]) => {
  const r = await admin(method, path, body);
  if (!want.includes(r.status)) fail(`sim ${method} ${path} -> ${r.status} ${JSON.stringify(r.json)}`);
  return r.json;
};

// Polls `check` every 25 ms until it returns a truthy value or `ms` elapse.
const waitFor = async (what, check, ms = STEP_MS) => {
  const deadline = Date.now() + ms;
  for (;;) {
    const v = await check();
    if (v) return v;
    if (Date.now() > deadline) fail(`timed out after ${ms / 1000} s waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 25));
  }
};

const freePort = () => new Promise((resolve, reject) => {
  const s = createNetServer();
  s.once('error', reject);
  s.listen(0, '127.0.0.1', () => { const { port } = s.address(); s.close(() => resolve(port)); });
});
const userJid = (phone) => `${phone}@s.whatsapp.net`;
const textOf = (m) => m?.conversation ?? m?.extendedTextMessage?.text ?? null;

// ------------------------------------------------------------------ webhook receiver
// Every delivery is kept raw until the secret is known (the first events can race the 201 of
// POST /v1/tenants), then verified: signature `t=<unix>,v1=<hmac(t + "." + raw body)>` with a
// 5-minute tolerance, timestamp and event-id headers equal to the body's fields.
const hooks = { secret: null, pending: [], seen: new Set(), events: [], bad: [] };
const verifyHook = (h) => {
  const header = h.headers['x-staylinked-signature'] || '';
  const parts = Object.fromEntries(header.split(',').map((p) => p.split('=', 2)));
  const t = parts.t || '';
  const sig = parts.v1 || '';
  const mac = createHmac('sha256', hooks.secret).update(`${t}.`).update(h.body).digest('hex');
  if (sig.length !== mac.length || !timingSafeEqual(Buffer.from(mac), Buffer.from(sig))) {
    hooks.bad.push(`bad signature ${JSON.stringify(header)} on ${h.body.toString().slice(0, 120)}`);
    return;
  }
  if (Math.abs(Date.now() / 1000 - Number(t)) > 300) hooks.bad.push(`stale signature timestamp ${t}`);
  if (t !== h.headers['x-staylinked-timestamp']) hooks.bad.push(`signed timestamp ${t} differs from the header`);
  let ev;
  try { ev = JSON.parse(h.body.toString('utf8')); } catch (e) { hooks.bad.push(`body is not JSON: ${e}`); return; }
  if (String(ev.timestamp) !== h.headers['x-staylinked-timestamp']) hooks.bad.push(`timestamp header mismatch on ${ev.id}`);
  if (ev.id !== h.headers['x-staylinked-event-id']) hooks.bad.push(`event-id header mismatch on ${ev.id}`);
  if (ev.tenant !== TENANT) hooks.bad.push(`event for tenant ${ev.tenant}`);
  // At least once: a redelivery repeats the event id (documented; deduplicate on it).
  if (hooks.seen.has(ev.id)) return;
  hooks.seen.add(ev.id);
  hooks.events.push(ev);
  tenant.onEvent(ev);
};
const drainHooks = () => { if (hooks.secret) for (const h of hooks.pending.splice(0)) verifyHook(h); };
const webhookServer = createHttpServer((req, res) => {
  const chunks = [];
  req.on('data', (c) => chunks.push(c));
  req.on('end', () => {
    hooks.pending.push({ body: Buffer.concat(chunks), headers: req.headers });
    drainHooks();
    res.writeHead(204).end();
  });
});
await new Promise((r) => webhookServer.listen(0, '127.0.0.1', r));
const webhookUrl = `http://127.0.0.1:${webhookServer.address().port}/hooks/staylinked`;

// ------------------------------------------------------------------ participants
class StaylinkedParticipant {
  constructor(name, phone) {
    this.name = name;
    this.phone = phone;
    this.jid = userJid(phone);
    this.received = [];
    this.updates = [];
    this.qrs = 0;
    this.proc = null;
    this.base = null;
    this.store = join(work, 'store', 'staylinked.redb');
    this.starts = 0;
  }

  onEvent(ev) {
    if (ev.event === 'message.received') {
      const m = ev.data.message;
      this.received.push({ id: m.id, chat: m.chat, fromMe: !!m.from_me, sender: m.sender, text: m.text });
    } else if (ev.event === 'message.status') {
      const d = ev.data;
      const status = typeof d.status === 'string' ? d.status : d.status?.status;
      this.updates.push({ id: d.id, status, from: d.from });
    } else if (ev.event === 'qr.updated') {
      this.qrs += 1;
    }
  }

  api(method, path, body) {
    return call(this.base, method, path, body, { 'x-api-key': API_KEY });
  }

  async apiOk(method, path, body, want = [200, 201, 202]) {
    const r = await this.api(method, path, body);
    if (!want.includes(r.status)) fail(`${this.name}: ${method} ${path} -> ${r.status} ${JSON.stringify(r.json)}`);
    return r.json;
  }

  view() { return this.apiOk('GET', `/v1/tenants/${TENANT}`); }

  // Spawns `staylinked run` on a fresh port against the simulator and waits for /readyz.
  async start() {
    const port = await freePort();
    this.starts += 1;
    gatewayLog = join(work, `gateway-${this.starts}.log`);
    const env = { ...process.env };
    for (const k of ['FIRESTORE_EMULATOR_HOST', 'GOOGLE_CLOUD_PROJECT', 'STAYLINKED_MASTER_KEY']) delete env[k];
    Object.assign(env, {
      RUST_LOG: process.env.GATEWAY_LOG || 'info',
      PORT: String(port),
      STAYLINKED_BIND: '127.0.0.1',
      STAYLINKED_STORE: 'embedded',
      STAYLINKED_STORE_PATH: this.store,
      STAYLINKED_API_KEY: API_KEY,
      STAYLINKED_WA_URL: ready.ws_url,
      STAYLINKED_WA_ROOT_KEY: ready.root_public_key,
      STAYLINKED_CONNECT_STAGGER_MS: '0',
      STAYLINKED_SEND_WARMUP: '0s',
      STAYLINKED_SEND_GAP_MIN: '0s',
      STAYLINKED_SEND_GAP_MAX: '0s',
      STAYLINKED_SEND_PER_MINUTE: '600',
      STAYLINKED_WEBHOOK_RETRY_BASE: '100ms',
      STAYLINKED_WEBHOOK_RETRY_MAX: '1s',
      STAYLINKED_WEBHOOK_TIMEOUT: '5s',
      // The receiver is this script on 127.0.0.1 over plain http.
      STAYLINKED_WEBHOOK_ALLOW_PRIVATE: '1',
      STAYLINKED_SHUTDOWN_DEADLINE: '8s',
    });
    const proc = spawnChild(`gateway#${this.starts}`, ['run'], env, gatewayLog);
    this.proc = proc;
    this.base = `http://127.0.0.1:${port}`;
    proc.exited.then(({ code, signal }) => {
      if (!finished && this.proc === proc) fail(`${proc.name} exited unexpectedly (code ${code}, signal ${signal})`);
    });
    await waitFor(`${proc.name} /readyz`, async () => {
      try { return (await fetch(`${this.base}/readyz`)).status === 200; } catch { return false; }
    });
  }

  // SIGTERM: the gateway flushes, releases its lease and exits 0 within its shutdown deadline.
  async stop() {
    const proc = this.proc;
    this.proc = null;
    if (!proc) return;
    proc.kill('SIGTERM');
    const r = await Promise.race([proc.exited, new Promise((res) => setTimeout(() => res(null), 10_000))]);
    if (!r) fail(`${proc.name} did not exit within 10 s of SIGTERM`);
    if (r.code !== 0) fail(`${proc.name} exited with code ${r.code} signal ${r.signal} after SIGTERM`);
  }

  async send(to, text) {
    const r = await this.apiOk('POST', `/v1/tenants/${TENANT}/messages`, { to, text }, [202]);
    if (!r?.id) fail(`${this.name}: message API answered without an id: ${JSON.stringify(r)}`);
    return r.id;
  }
}

class BaileysParticipant {
  constructor(name, phone) {
    this.name = name;
    this.phone = phone;
    this.jid = userJid(phone);
    this.received = [];
    this.updates = [];
    this.undecryptable = [];
    this.groups = [];
    this.sent = new Map();
    this.sock = null;
    this.authDir = mkdtempSync(join(work, `baileys-${name}-`));
  }

  async init() {
    const { state, saveCreds } = await useMultiFileAuthState(this.authDir);
    this.state = state;
    this.saveCreds = saveCreds;
  }

  // Opens a socket; pairs by QR through the admin API when Baileys shows one (first start),
  // follows the 515 restart, resolves once the connection is open.
  start({ allowQr = false } = {}) {
    return new Promise((resolve, reject) => {
      const sock = makeWASocket({
        auth: this.state,
        logger: pino({ level: 'silent' }),
        waWebSocketUrl: ready.ws_url,
        browser: ['Ubuntu', 'Chrome', '22.04'],
        printQRInTerminal: false,
        fireInitQueries: false,
        markOnlineOnConnect: false,
        getMessage: async (key) => this.sent.get(key.id),
        userDevicesCache: NO_DEVICE_CACHE,
      });
      this.sock = sock;
      let opened = false;
      sock.ev.on('creds.update', this.saveCreds);
      sock.ev.on('connection.update', async (u) => {
        if (u.qr) {
          if (!allowQr) return reject(new Error(`${this.name}: QR shown although creds are saved`));
          const r = await admin('POST', `/phones/${this.phone}/scan`, { qr: u.qr });
          if (r.status !== 200) return reject(new Error(`scan -> ${r.status} ${JSON.stringify(r.json)}`));
          log(`${this.name}: scanned, device ${r.json.device_jid}`);
        }
        if (u.connection === 'open') {
          opened = true;
          resolve();
        }
        if (u.connection === 'close') {
          const code = u.lastDisconnect?.error?.output?.statusCode;
          if (code === DisconnectReason.restartRequired) {
            this.start({ allowQr: false }).then(resolve, reject);
          } else if (!opened) {
            reject(new Error(`${this.name}: closed with ${code} before open`));
          } else if (!finished && this.sock === sock) {
            fail(`${this.name}: connection closed unexpectedly (${code})`);
          }
        }
      });
      sock.ev.on('messages.upsert', ({ messages }) => {
        for (const m of messages) {
          if (m.messageStubType === CIPHERTEXT_STUB) {
            this.undecryptable.push({ id: m.key.id, from: m.key.participant || m.key.remoteJid, why: m.messageStubParameters });
            continue;
          }
          if (m.messageStubType) continue; // e.g. GROUP_CREATE from the w:gp2 notification
          this.received.push({
            id: m.key.id, chat: m.key.remoteJid, fromMe: !!m.key.fromMe,
            sender: m.key.participant || m.key.remoteJid, text: textOf(m.message),
          });
        }
      });
      sock.ev.on('groups.upsert', (gs) => { for (const g of gs) this.groups.push(g.id); });
      sock.ev.on('messages.update', (ups) => {
        for (const u of ups) if (u.update?.status != null) this.updates.push({ id: u.key.id, status: u.update.status });
      });
    });
  }

  async stop() {
    const sock = this.sock;
    this.sock = null;
    if (!sock) return;
    sock.end(undefined);
  }

  async send(to, text) {
    const m = await this.sock.sendMessage(to, { text });
    this.sent.set(m.key.id, m.message);
    return m.key.id;
  }
}

// ------------------------------------------------------------------ expectations
// Every message sent, with who must receive it; checked exactly-once at the end.
const expected = [];
const sendAndExpect = async (from, tos, chatJid, text) => {
  const id = await from.send(chatJid, text);
  expected.push({ id, text, from, to: tos });
  for (const to of tos) {
    await waitFor(`${to.name} to receive ${JSON.stringify(text)} (${id})`,
      () => to.received.find((m) => m.id === id && m.text === text && !m.fromMe));
  }
  return id;
};
const tenantDelivered = (t, id) => waitFor(`${t.name} to see ${id} delivered (message.status webhook)`,
  () => t.updates.find((u) => u.id === id && (u.status === 'delivered' || u.status === 'read')));
const checkClean = async (when) => {
  const stats = await adminOk('GET', '/stats');
  if (stats.retry_receipts !== 0 || stats.phone_decrypt_failures !== 0) {
    for (const ph of [PHONE_T, PHONE_B]) {
      err(`phone ${ph} inbox ${JSON.stringify((await admin('GET', `/phones/${ph}/inbox`)).json)}`);
    }
    err(`sent ${JSON.stringify(expected.map((e) => [e.id, e.from.name, e.text]))}`);
    fail(`${when}: expected 0 retry receipts and 0 phone decrypt failures, stats ${JSON.stringify(stats)}`);
  }
  if (hooks.bad.length) fail(`${when}: webhook verification failed: ${hooks.bad.join('; ')}`);
  for (const p of participants) {
    if (p.undecryptable?.length) fail(`${when}: ${p.name} could not decrypt ${JSON.stringify(p.undecryptable)}`);
  }
  return stats;
};

// ------------------------------------------------------------------ scenario
step = 'create phones';
for (const p of [PHONE_T, PHONE_B]) await adminOk('POST', '/phones', { phone: p, name: `Phone ${p}` });

step = 'start the gateway and create the tenant';
const tenant = new StaylinkedParticipant('tenant', PHONE_T);
participants.push(tenant);
await tenant.start();
const created = await tenant.apiOk('POST', '/v1/tenants', { id: TENANT, webhook_url: webhookUrl }, [201]);
if (!created.webhook_secret?.startsWith('whsec_')) fail(`no webhook secret in ${JSON.stringify(created)}`);
hooks.secret = created.webhook_secret;
drainHooks();

step = 'link the tenant by QR';
await tenant.apiOk('POST', `/v1/tenants/${TENANT}/link`, { method: 'qr' }, [202]);
const qr = await waitFor('a QR on GET /qr?format=json', async () => {
  const r = await tenant.api('GET', `/v1/tenants/${TENANT}/qr?format=json`);
  return r.status === 200 && r.json?.qr;
});
const scan = await adminOk('POST', `/phones/${PHONE_T}/scan`, { qr });
log(`tenant: scanned, device ${scan.device_jid}`);
await waitFor('the tenant to be connected', async () => (await tenant.view()).state === 'connected');
const pairingsAfterLink = (await adminOk('GET', '/stats')).pairings;

step = 'pair the Baileys companion';
const b1 = new BaileysParticipant('B1', PHONE_B);
participants.push(b1);
await b1.init();
await b1.start({ allowQr: true }).catch((e) => fail(e.message));
log('B1: open');

step = '1:1 tenant -> B (first contact: pkmsg)';
const m1 = await sendAndExpect(tenant, [b1], b1.jid, 'hello B1 from the staylinked tenant');
await tenantDelivered(tenant, m1);
step = '1:1 B -> tenant (msg on the session the pkmsg built)';
await sendAndExpect(b1, [tenant], tenant.jid, 'hello tenant from Baileys B1');
step = '1:1 tenant -> B (msg)';
await sendAndExpect(tenant, [b1], b1.jid, 'second message from the tenant');
step = '1:1 B -> tenant (msg)';
await sendAndExpect(b1, [tenant], tenant.jid, 'second message from B1');
log('1:1 both ways ok');

step = 'group';
const group = (await adminOk('POST', '/groups', { subject: 'staylinked interop', participants: [PHONE_T, PHONE_B] })).jid;
await waitFor('B1 to hear of the new group (w:gp2 create)', () => b1.groups.includes(group));
await sendAndExpect(tenant, [b1], group, 'group hello from the tenant');
await sendAndExpect(b1, [tenant], group, 'group hello from B1');
log('group both ways ok');
await checkClean('before the restart');

// A second companion on B, linked while the gateway runs: after the restart the tenant's fresh
// device lists include it. (The simulator sends no `devices` notification to contacts when a
// companion links, so a running tenant would not see B2 before its device-list cache expires.)
step = 'pair a second Baileys companion B2 on account B';
const b2 = new BaileysParticipant('B2', PHONE_B);
participants.push(b2);
await b2.init();
await b2.start({ allowQr: true }).catch((e) => fail(e.message));
log('B2: open');

step = 'restart the gateway (SIGTERM, same store)';
const viewBefore = await tenant.view();
const qrsBefore = tenant.qrs;
await tenant.stop();
log('gateway stopped (SIGTERM, exit 0)');
await tenant.start();
const viewAfter = await waitFor('the tenant to be connected again without a QR', async () => {
  const v = await tenant.view();
  return v.state === 'connected' && v;
});
if (viewAfter.me !== viewBefore.me) fail(`device changed across the restart: ${viewBefore.me} -> ${viewAfter.me}`);
const devices = (await adminOk('GET', `/phones/${PHONE_T}/devices`)).devices;
if (devices.length !== 1) fail(`phone ${PHONE_T} lists ${devices.length} devices after the restart: ${JSON.stringify(devices)}`);
const statsRestart = await adminOk('GET', '/stats');
if (statsRestart.pairings !== pairingsAfterLink + 2) {
  // +2: the Baileys companions paired after the tenant.
  fail(`a new pairing happened across the restart: stats ${JSON.stringify(statsRestart)}`);
}
const qrNow = await tenant.api('GET', `/v1/tenants/${TENANT}/qr?format=json`);
if (qrNow.status !== 404 || tenant.qrs !== qrsBefore) fail(`a QR showed after the restart (${qrNow.status})`);
log(`gateway restarted from the store: connected as ${viewAfter.me}, 1 device on the phone, no QR`);

// The other first contact: Baileys initiates, so staylinked decrypts a libsignal pkmsg (built
// from a one-time prekey the gateway uploaded before the restart and kept in its store).
step = 'after restart: B2 -> tenant (first contact from Baileys: pkmsg)';
await sendAndExpect(b2, [tenant], tenant.jid, 'first contact from Baileys B2');
step = 'after restart: 1:1 tenant -> B (fan-out to B1 and B2)';
const m7 = await sendAndExpect(tenant, [b1, b2], b1.jid, 'after the restart, from the tenant');
await tenantDelivered(tenant, m7);
step = 'after restart: 1:1 B -> tenant';
await sendAndExpect(b1, [tenant], tenant.jid, 'after the restart, from B1');
step = 'after restart: group tenant -> B1 and B2 (SKDM to the new device)';
await sendAndExpect(tenant, [b1, b2], group, 'group, after the restart, from the tenant');
step = 'after restart: group B -> tenant';
await sendAndExpect(b1, [tenant], group, 'group, after the restart, from B1');
await sendAndExpect(b2, [tenant], group, 'group, after the restart, from B2');
log('after restart: Baileys-initiated pkmsg, 1:1 and group both ways ok');

step = 'exactly once';
// Let late duplicates (redeliveries, resends) surface before counting.
await new Promise((r) => setTimeout(r, 1000));
for (const p of [tenant, b1, b2]) {
  const incoming = p.received.filter((m) => !m.fromMe);
  const want = expected.filter((e) => e.to.includes(p));
  for (const e of want) {
    const got = incoming.filter((m) => m.id === e.id);
    if (got.length !== 1 || got[0].text !== e.text) {
      fail(`${p.name} received ${e.id} ${got.length} times (${JSON.stringify(got)}), want once with ${JSON.stringify(e.text)}`);
    }
  }
  const unexpected = incoming.filter((m) => !want.some((e) => e.id === m.id));
  if (unexpected.length) fail(`${p.name} received unexpected messages ${JSON.stringify(unexpected)}`);
}
const stats = await checkClean('at the end');
log('stats', JSON.stringify({
  messages_routed: stats.messages_routed, retry_receipts: stats.retry_receipts,
  phone_decrypt_failures: stats.phone_decrypt_failures, pairings: stats.pairings, webhooks: hooks.events.length,
}));

step = 'done';
finished = true;
clearTimeout(overall);
await b1.stop();
await b2.stop();
await tenant.stop();
cleanup();
log(`OK: ${expected.length} messages exactly once (1:1 and group, both ways, across a gateway restart), `
  + `0 retry receipts, 0 decrypt failures, ${hooks.events.length} signed webhooks verified`);
process.exit(0);
