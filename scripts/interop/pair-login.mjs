// Interop check: Baileys 6.7.21 (a client nobody on this project wrote) pairs with and logs in
// to `staylinked sim`, unmodified.
//   QR shown -> scanned through the admin API -> pair-success -> 515 -> reconnect -> open,
//   then a fresh Baileys socket from the saved auth state -> open again with no QR,
//   and the simulator lists exactly one linked device.
// Usage: node scripts/interop/pair-login.mjs [path/to/staylinked]
// Exits 0 on success; on any failure or after 30 s prints the failed step and exits 1.
import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import pino from 'pino';
import makeWASocket, { useMultiFileAuthState, DisconnectReason } from 'baileys';

const BIN = process.argv[2] || process.env.STAYLINKED_BIN || 'target/debug/staylinked';
const PHONE = '15550001111';
const OVERALL_MS = 30_000;
let step = 'start simulator';
const log = (...a) => console.log('[pair-login]', ...a);

const authDir = mkdtempSync(join(tmpdir(), 'staylinked-baileys-'));
const sim = spawn(BIN, ['sim', '--listen', '127.0.0.1:0'], { stdio: ['ignore', 'pipe', 'inherit'] });
let sock;
const fail = (msg) => {
  console.error(`[pair-login] FAILED at step "${step}": ${msg}`);
  try { sock?.end(undefined); } catch {}
  sim.kill('SIGTERM');
  rmSync(authDir, { recursive: true, force: true });
  process.exit(1);
};
const overall = setTimeout(() => fail(`timed out after ${OVERALL_MS / 1000} s`), OVERALL_MS);
sim.on('exit', (code, sig) => { if (step !== 'done') fail(`simulator exited early (code ${code}, signal ${sig})`); });

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

step = 'create phone';
const created = await admin('POST', '/phones', { phone: PHONE, name: 'Alice' });
if (created.status !== 201 || created.json.jid !== `${PHONE}@s.whatsapp.net`) fail(`POST /phones -> ${created.status} ${JSON.stringify(created.json)}`);

const { state, saveCreds } = await useMultiFileAuthState(authDir);
const logger = pino({ level: 'silent' });

// One Baileys socket; resolves with how it ended ('open' after closing it ourselves, or a close code).
const connect = (label, { allowQr }) => new Promise((resolve) => {
  let opened = false, sawQr = false;
  sock = makeWASocket({ auth: state, logger, waWebSocketUrl: ready.ws_url, browser: ['Ubuntu', 'Chrome', '22.04'], printQRInTerminal: false });
  sock.ev.on('creds.update', saveCreds);
  sock.ev.on('connection.update', async (u) => {
    if (u.qr) {
      sawQr = true;
      if (!allowQr) return fail(`${label}: Baileys showed a QR although it has saved creds`);
      step = `${label}: scan QR`;
      const r = await admin('POST', `/phones/${PHONE}/scan`, { qr: u.qr });
      if (r.status !== 200) return fail(`scan -> ${r.status} ${JSON.stringify(r.json)}`);
      log('scanned; device', r.json.device_jid);
    }
    if (u.connection === 'open') {
      opened = true;
      log(`${label}: connection open`);
      setTimeout(() => sock.end(undefined), 200);
    }
    if (u.connection === 'close') {
      const code = u.lastDisconnect?.error?.output?.statusCode;
      resolve({ opened, code, sawQr });
    }
  });
});

step = 'first connection (QR pairing)';
const r1 = await connect('pairing', { allowQr: true });
if (r1.code !== DisconnectReason.restartRequired) fail(`expected 515 after pairing, got ${r1.code} (opened=${r1.opened})`);
log('pairing connection ended with 515');
await saveCreds();

step = 'reconnect after 515';
const r2 = await connect('after-515', { allowQr: false });
if (!r2.opened) fail(`did not reach open after 515 (closed with ${r2.code})`);
await saveCreds();

step = 'restart from saved auth state';
const again = await useMultiFileAuthState(authDir);
if (!again.state.creds.me?.id) fail('saved creds have no me.id');
state.creds = again.state.creds;
const r3 = await connect('restart', { allowQr: false });
if (!r3.opened) fail(`did not reach open from saved creds (closed with ${r3.code})`);

step = 'device list';
const devs = await admin('GET', `/phones/${PHONE}/devices`);
if (devs.status !== 200 || devs.json.devices.length !== 1) fail(`expected exactly one device, got ${JSON.stringify(devs.json)}`);
if (devs.json.devices[0].logins < 2) fail(`expected >= 2 logins, got ${JSON.stringify(devs.json)}`);
log('devices', JSON.stringify(devs.json.devices));

step = 'done';
clearTimeout(overall);
sim.kill('SIGTERM');
await new Promise((r) => sim.once('exit', r));
rmSync(authDir, { recursive: true, force: true });
log('OK: Baileys paired (QR), restarted after 515, logged in twice; one device listed');
process.exit(0);
