// Interop check: end-to-end messaging through `staylinked sim` with Baileys 6.7.21 (its own
// libsignal) as independent clients, and the simulator's phones as Signal peers.
//   two accounts, one Baileys companion each (QR pairing via the admin API), then:
//   1:1 both ways, phone -> Baileys, Baileys -> phone (phone inbox), a group message both ways,
//   a message queued while a Baileys companion was offline, delivered after it reconnects, and a
//   corrupted delivery recovered through Baileys' retry receipt.
// Usage: node scripts/interop/messaging.mjs [path/to/staylinked]
// Exits 0 on success; on any miss, or after OVERALL_MS, prints the failed step and exits 1.
//
// Participants share one small interface so other clients (e.g. a staylinked tenant) can be
// added to the scenarios later:
//   { name, phone, jid, start(), stop(), send(toJid, text) -> id, received[], updates[] }
// where received[] holds { id, chat, fromMe, sender, text, type } and updates[] holds
// { id, status } (3 = delivered).
import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import pino from 'pino';
import makeWASocket, { useMultiFileAuthState, DisconnectReason } from 'baileys';

const BIN = process.argv[2] || process.env.STAYLINKED_BIN || 'target/debug/staylinked';
const PHONE_A = '15550000001';
const PHONE_B = '15550000002';
const OVERALL_MS = 90_000;
const STEP_MS = 15_000;
// libsignal logs session churn ("Closing session", "Session error") through console.*; keep
// our own lines and silence the rest unless MESSAGING_VERBOSE is set.
const out = console.log.bind(console);
const err = console.error.bind(console);
if (!process.env.MESSAGING_VERBOSE) {
  for (const k of ['log', 'info', 'warn', 'error', 'debug', 'trace']) console[k] = () => {};
}
const log = (...a) => out('[messaging]', ...a);
let step = 'start simulator';

const tmpDirs = [];
const participants = [];
const sim = spawn(BIN, ['sim', '--listen', '127.0.0.1:0'], { stdio: ['ignore', 'pipe', 'inherit'] });
let finished = false;
const cleanup = () => {
  for (const p of participants) { try { p.sock?.end(undefined); } catch {} }
  sim.kill('SIGTERM');
  for (const d of tmpDirs) rmSync(d, { recursive: true, force: true });
};
const fail = (msg) => {
  if (finished) return;
  finished = true;
  err(`[messaging] FAILED at step "${step}": ${msg}`);
  cleanup();
  process.exit(1);
};
const overall = setTimeout(() => fail(`timed out after ${OVERALL_MS / 1000} s`), OVERALL_MS);
sim.on('exit', (code, sig) => { if (!finished) fail(`simulator exited early (code ${code}, signal ${sig})`); });
process.on('unhandledRejection', (e) => fail(`unhandled rejection: ${e?.stack || e}`));

const ready = await new Promise((resolve) => {
  createInterface({ input: sim.stdout }).once('line', (l) => resolve(JSON.parse(l)));
});
log('simulator ready', ready.ws_url);

const admin = async (method, path, body) => {
  const r = await fetch(ready.admin_url + path, {
    method, headers: { 'content-type': 'application/json' }, body: body && JSON.stringify(body),
  });
  const text = await r.text();
  return { status: r.status, json: text ? JSON.parse(text) : null };
};
const adminOk = async (method, path, body, want = [200, 201]) => {
  const r = await admin(method, path, body);
  if (!want.includes(r.status)) fail(`${method} ${path} -> ${r.status} ${JSON.stringify(r.json)}`);
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

const textOf = (m) => m?.conversation ?? m?.extendedTextMessage?.text ?? null;
const userJid = (phone) => `${phone}@s.whatsapp.net`;

class BaileysParticipant {
  constructor(name, phone) {
    this.name = name;
    this.phone = phone;
    this.jid = userJid(phone);
    this.received = [];
    this.updates = [];
    this.groups = [];
    this.sent = new Map();
    this.sock = null;
    this.authDir = mkdtempSync(join(tmpdir(), `staylinked-msg-${name}-`));
    tmpDirs.push(this.authDir);
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
          }
        }
      });
      sock.ev.on('messages.upsert', ({ messages, type }) => {
        for (const m of messages) {
          this.received.push({
            id: m.key.id, chat: m.key.remoteJid, fromMe: !!m.key.fromMe,
            sender: m.key.participant || m.key.remoteJid, text: textOf(m.message), type,
          });
        }
      });
      sock.ev.on('groups.upsert', (gs) => { for (const g of gs) this.groups.push(g.id); });
      sock.ev.on('messages.update', (ups) => {
        for (const u of ups) if (u.update?.status != null) this.updates.push({ id: u.key.id, status: u.update.status });
      });
      sock.ev.on('message-receipt.update', (ups) => {
        for (const u of ups) this.updates.push({ id: u.key.id, status: 3, receipt: u.receipt });
      });
    });
  }

  async stop() {
    const sock = this.sock;
    this.sock = null;
    if (!sock) return;
    await new Promise((resolve) => {
      sock.ev.on('connection.update', (u) => { if (u.connection === 'close') resolve(); });
      sock.end(undefined);
      setTimeout(resolve, 2000);
    });
  }

  async send(to, text) {
    const m = await this.sock.sendMessage(to, { text });
    this.sent.set(m.key.id, m.message);
    return m.key.id;
  }
}

// The simulator's phone of an account, through the admin API, behind the same send interface.
const phone = (p) => ({
  name: `phone ${p}`,
  jid: userJid(p),
  send: async (to, text) => (await adminOk('POST', `/phones/${p}/send`, { to, text })).id,
  inbox: async () => (await adminOk('GET', `/phones/${p}/inbox`)).messages,
  sent: async () => (await adminOk('GET', `/phones/${p}/sent`)).messages,
});

const gotText = (who, id, text) => waitFor(`${who.name} to receive ${JSON.stringify(text)} (${id})`,
  () => who.received.find((m) => m.id === id && m.text === text));
const inInbox = (ph, id, text) => waitFor(`${ph.name} to decrypt ${JSON.stringify(text)} (${id})`,
  async () => (await ph.inbox()).find((m) => m.id === id && m.text === text));
const delivered = (who, id) => waitFor(`${who.name} to see ${id} delivered`,
  () => who.updates.find((u) => u.id === id && u.status >= 3));

// ---------------------------------------------------------------- scenario
step = 'create phones';
for (const p of [PHONE_A, PHONE_B]) await adminOk('POST', '/phones', { phone: p, name: `Phone ${p}` });
const phoneA = phone(PHONE_A);
const phoneB = phone(PHONE_B);

step = 'pair two Baileys companions';
const a1 = new BaileysParticipant('A1', PHONE_A);
const b1 = new BaileysParticipant('B1', PHONE_B);
participants.push(a1, b1);
for (const p of participants) {
  await p.init();
  await p.start({ allowQr: true }).catch((e) => fail(e.message));
  log(`${p.name}: open`);
}

step = '1:1 A1 -> B';
const m1 = await a1.send(phoneB.jid, 'hello B from A1');
await gotText(b1, m1, 'hello B from A1');
await inInbox(phoneB, m1, 'hello B from A1');
await delivered(a1, m1);
log('A1 -> B ok (B1 decrypted, phone B decrypted, A1 saw delivery)');

step = '1:1 B1 -> A';
const m2 = await b1.send(phoneA.jid, 'hi A from B1');
await gotText(a1, m2, 'hi A from B1');
await inInbox(phoneA, m2, 'hi A from B1');
await delivered(b1, m2);
log('B1 -> A ok (Baileys -> phone: phone A inbox)');

step = 'phone A -> B (admin send)';
const m3 = await phoneA.send(phoneB.jid, 'from phone A');
await gotText(b1, m3, 'from phone A');
await waitFor('A1 to get the device-sent copy', () => a1.received.find((m) => m.id === m3 && m.fromMe && m.text === 'from phone A'));
await waitFor('phone A to see B1 delivery', async () => {
  const s = (await phoneA.sent()).find((m) => m.id === m3);
  return s && Object.values(s.devices).filter((v) => v === 'delivered' || v === 'read').length >= 2;
});
log('phone A -> B ok (B1 decrypted, A1 got the DSM, receipts recorded)');

step = 'group';
const group = (await adminOk('POST', '/groups', { subject: 'interop', participants: [PHONE_A, PHONE_B] })).jid;
await waitFor('B1 to hear of the new group (w:gp2 create)', () => b1.groups.includes(group));
const g1 = await a1.send(group, 'group hello from A1');
await gotText(b1, g1, 'group hello from A1');
const g2 = await phoneB.send(group, 'group hello from phone B');
await gotText(a1, g2, 'group hello from phone B');
await gotText(b1, g2, 'group hello from phone B');
log('group ok (A1 -> group reached B1; phone B -> group reached A1 and B1)');

step = 'offline queue';
await b1.stop();
await waitFor('the simulator to see B1 offline',
  async () => (await adminOk('GET', `/phones/${PHONE_B}/devices`)).devices.every((d) => !d.online));
const m4 = await phoneA.send(phoneB.jid, 'queued while B1 was away');
const m5 = await a1.send(phoneB.jid, 'also queued, from A1');
await waitFor('the simulator to queue both', async () => (await adminOk('GET', '/stats')).messages_queued >= 2);
await b1.start().catch((e) => fail(e.message));
await gotText(b1, m4, 'queued while B1 was away');
await gotText(b1, m5, 'also queued, from A1');
await delivered(a1, m5);
const stats = await adminOk('GET', '/stats');
if (stats.offline_redelivered < 2) fail(`expected >= 2 offline redeliveries, stats ${JSON.stringify(stats)}`);
log('offline queue ok (B1 reconnected and decrypted both queued messages)');

step = 'retry after a corrupted delivery';
const b1Device = (await adminOk('GET', `/phones/${PHONE_B}/devices`)).devices[0].device_jid;
await adminOk('POST', '/faults', { device_jid: b1Device, fault: 'corrupt_next_message' }, [204]);
const m6 = await a1.send(phoneB.jid, 'survives a retry');
// Baileys waits 5 s before its retry receipt (transcript quirk 5), then A1 resends.
await gotText(b1, m6, 'survives a retry');
const after = await adminOk('GET', '/stats');
if (after.corrupted < 1 || after.retry_receipts <= stats.retry_receipts) {
  fail(`expected a corrupted copy and a new retry receipt, stats ${JSON.stringify(after)}`);
}
log('retry ok (corrupted copy -> B1 retry receipt -> A1 resend -> B1 decrypted)');

step = 'done';
finished = true;
clearTimeout(overall);
log('stats', JSON.stringify(after));
cleanup();
await new Promise((r) => sim.once('exit', r));
log('OK: 1:1 both ways, phone <-> Baileys, group both ways, offline queue after reconnect, retry');
process.exit(0);
