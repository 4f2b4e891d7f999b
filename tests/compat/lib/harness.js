'use strict'
// Test harness for the nsqjs compatibility suite: starts cairnd in a fresh temp dir, connects
// nsqjs Writers and Readers to it, and gives every wait a bounded timeout so that a broken broker
// fails a test instead of hanging it.

const {spawn, execFileSync} = require('node:child_process')
const fs = require('node:fs')
const net = require('node:net')
const os = require('node:os')
const path = require('node:path')

const nsq = require('nsqjs')

const REPO = path.resolve(__dirname, '..', '..', '..')
const CAIRND = process.env.CAIRND || path.join(REPO, 'build', 'release', 'bin', 'cairnd')
// The project's sample-traffic generator, built beside cairnd.
const CAIRN_SAMPLE = process.env.CAIRN_SAMPLE || path.join(path.dirname(CAIRND), 'cairn-sample')

// Default bound for "this should happen soon" waits.
const WAIT_MS = 5000

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms))

/** Rejects with a message naming `what` unless `promise` settles within `ms`. */
function withTimeout(promise, ms, what) {
  let timer
  const timeout = new Promise((_, reject) => {
    timer = setTimeout(() => reject(new Error(`timed out after ${ms} ms waiting for ${what}`)), ms)
  })
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer))
}

/** Polls `pred` every 10 ms until it is true; throws (naming `what` and `detail()`) after `ms`. */
async function waitUntil(pred, ms, what, detail = () => '') {
  const deadline = Date.now() + ms
  while (!pred()) {
    if (Date.now() > deadline) {
      const d = detail()
      throw new Error(`timed out after ${ms} ms waiting for ${what}${d ? `: ${d}` : ''}`)
    }
    await sleep(10)
  }
}

// Every cairnd this process started and has not seen exit; killed if the test process ends or is
// stopped early (a test runner timeout, ^C), so no broker outlives the suite.
const live = new Set()
function killLive() {
  for (const child of live) {
    try {
      child.kill('SIGKILL')
    } catch (e) {
      // already gone
    }
  }
}
process.on('exit', killLive)
for (const sig of ['SIGINT', 'SIGTERM', 'SIGHUP']) {
  process.once(sig, () => {
    killLive()
    process.exit(128 + os.constants.signals[sig])
  })
}

/**
 * Starts cairnd on 127.0.0.1 with an OS-chosen port.
 *   opts.args     extra command-line flags, e.g. ['--msg-timeout', '2s']
 *   opts.dataDir  reuse this data dir (a restart); otherwise a fresh one under os.tmpdir()
 * Returns {host, port, httpPort, addr, dataDir, proc, log(), stop(), cleanup()}:
 *   stop()    SIGTERM, await exit (bounded), returns {code, signal}; safe to call twice
 *   cleanup() stop() and remove the temp dir this call created (not a dataDir passed in)
 */
async function startBroker(opts = {}) {
  if (!fs.existsSync(CAIRND)) {
    throw new Error(`cairnd binary not found at ${CAIRND} (set CAIRND)`)
  }
  const ownDir = opts.dataDir ? null : fs.mkdtempSync(path.join(os.tmpdir(), 'cairn-compat-'))
  const dataDir = opts.dataDir || path.join(ownDir, 'store')
  // The suite is about the wire protocol; its HTTP calls run as nsqd allows them (--admin-open),
  // unless a test sets the admin policy itself.
  const extra = opts.args || []
  const admin = extra.some((a) => a.startsWith('--admin-')) ? [] : ['--admin-open']
  // HTTPS (served with a certificate) on loopback too, never nsqd's default 0.0.0.0:4152.
  const args = ['--data-path', dataDir, '--tcp-address', '127.0.0.1:0', '--http-address', '127.0.0.1:0',
    '--https-address', '127.0.0.1:0', ...admin, ...extra]
  const proc = spawn(CAIRND, args, {stdio: ['ignore', 'ignore', 'pipe']})
  live.add(proc)

  let stderr = ''
  let exited = null
  const exitPromise = new Promise((resolve) => {
    proc.on('exit', (code, signal) => {
      live.delete(proc)
      exited = {code, signal}
      resolve(exited)
    })
  })
  proc.on('error', () => {}) // reported through the exit / listening timeout
  proc.stderr.setEncoding('utf8')

  const listening = new Promise((resolve, reject) => {
    proc.stderr.on('data', (chunk) => {
      stderr += chunk
      const m = /TCP: listening on ([0-9.]+):(\d+)/.exec(stderr)
      const mh = /HTTP: listening on ([0-9.]+):(\d+)/.exec(stderr)
      if (m && mh) resolve({host: m[1], port: Number(m[2]), httpPort: Number(mh[2])})
    })
    exitPromise.then((e) =>
      reject(new Error(`cairnd exited (code ${e.code}, signal ${e.signal}) before listening:\n${stderr}`))
    )
  })

  let stopping = null
  const stop = () => {
    if (!stopping) {
      stopping = (async () => {
        if (exited) {
          // Nobody here asked it to stop: it crashed, or something outside the suite killed it.
          throw new Error(
            `cairnd had already exited (code ${exited.code}, signal ${exited.signal}) before the ` +
              `test stopped it. Log:\n${stderr}`
          )
        }
        proc.kill('SIGTERM')
        try {
          return await withTimeout(exitPromise, 10000, 'cairnd to exit after SIGTERM')
        } catch (err) {
          proc.kill('SIGKILL')
          await withTimeout(exitPromise, 5000, 'cairnd to exit after SIGKILL')
          throw new Error(`${err.message}; had to SIGKILL it. Log:\n${stderr}`)
        }
      })()
    }
    return stopping
  }
  const cleanup = async () => {
    try {
      await stop()
    } finally {
      if (ownDir) fs.rmSync(ownDir, {recursive: true, force: true})
    }
  }

  let where
  try {
    where = await withTimeout(listening, WAIT_MS, 'cairnd to print "TCP: listening on" and "HTTP: listening on"')
  } catch (err) {
    await cleanup().catch(() => {})
    throw new Error(`${err.message}\ncairnd stderr:\n${stderr}`)
  }
  return {
    ...where,
    addr: `${where.host}:${where.port}`,
    dataDir,
    ownDir,
    proc,
    log: () => stderr,
    exited: () => exited,
    stop,
    cleanup,
  }
}

/** A connected nsqjs Writer; `errors` collects every 'error' event it emitted. */
async function connectWriter(broker, options = {}) {
  const writer = new nsq.Writer(broker.host, broker.port, options)
  writer.errors = []
  writer.on('error', (err) => writer.errors.push(err))
  const ready = new Promise((resolve, reject) => {
    writer.once('ready', resolve)
    writer.once('closed', () => reject(new Error('writer closed before ready')))
  })
  writer.connect()
  await withTimeout(ready, WAIT_MS, 'nsqjs Writer to be ready')
  return writer
}

/** writer.publish as a promise (single message or array → PUB / MPUB). */
function publish(writer, topic, msgs, ms = WAIT_MS) {
  return withTimeout(
    new Promise((resolve, reject) => writer.publish(topic, msgs, (err) => (err ? reject(err) : resolve()))),
    ms,
    `PUB/MPUB to ${topic} to be answered`
  )
}

/**
 * writer.deferPublish as a promise (DPUB). nsqjs 0.13.0's deferPublish hands its message straight
 * to produceMessages, which throws "Expect an array of messages" for a bare string, so the single
 * message is passed as a one-element array (which nsqjs then sends as one DPUB).
 */
function deferPublish(writer, topic, msg, delayMs, ms = WAIT_MS) {
  return withTimeout(
    new Promise((resolve, reject) =>
      writer.deferPublish(topic, [msg], delayMs, (err) => (err ? reject(err) : resolve()))
    ),
    ms,
    `DPUB to ${topic} to be answered`
  )
}

/** Publishes `bodies` one PUB at a time, in order. */
async function publishEach(writer, topic, bodies) {
  for (const b of bodies) await publish(writer, topic, b)
}

function closeWriter(writer) {
  try {
    if (writer && writer.conn && writer.conn.statemachine) writer.close()
  } catch (e) {
    // already closed
  }
}

/**
 * An nsqjs Reader subscribed to topic/channel on `broker`, resolved once SUB was answered OK.
 *   onMessage(msg, reader)  handler; default: record the message and leave it unanswered
 * The reader records every delivery in reader.received as
 *   {id, attempts, body (string), at (Date.now()), msg}
 * and every 'error' event in reader.errors, every nsqd_closed in reader.closedEvents.
 */
async function openReader(broker, topic, channel, options = {}, onMessage = null) {
  const reader = new nsq.Reader(topic, channel, {
    nsqdTCPAddresses: [broker.addr],
    // no reconnect attempts within a test's lifetime
    lookupdPollInterval: 60,
    ...options,
  })
  reader.received = []
  reader.errors = []
  reader.closedEvents = 0
  reader.on('error', (err) => reader.errors.push(err))
  reader.on('nsqd_closed', () => reader.closedEvents++)
  reader.on('message', (msg) => {
    reader.received.push({id: msg.id, attempts: msg.attempts, body: msg.body.toString(), at: Date.now(), msg})
    if (onMessage) onMessage(msg, reader)
  })
  const ready = new Promise((resolve, reject) => {
    reader.once('ready', resolve)
    reader.once('error', (err) => reject(err))
  })
  reader.connect()
  try {
    await withTimeout(ready, WAIT_MS, `nsqjs Reader ${topic}/${channel} to subscribe`)
  } catch (err) {
    reader.close()
    throw err
  }
  return reader
}

/** Waits until the reader has at least n deliveries. */
function waitForCount(reader, n, ms = WAIT_MS, what = `${n} messages`) {
  return waitUntil(() => reader.received.length >= n, ms, what, () => `got ${reader.received.length}`)
}

/** Closes the reader and waits (bounded) for its connection to go away. */
async function closeReader(reader) {
  if (!reader) return
  const conns = reader.readerRdy.connections.length
  const closed = new Promise((resolve) => {
    if (conns === 0) resolve()
    reader.once('nsqd_closed', resolve)
  })
  reader.close()
  await withTimeout(closed, WAIT_MS, 'nsqjs Reader to close').catch(() => {})
}

/** The raw NSQDConnection under a Reader with exactly one connection (for wire-level spying). */
function readerConnection(reader) {
  const c = reader.readerRdy.connections[0]
  return c && c.conn
}

/** `n` deterministic JSON log records from the project's sample generator, one string each. */
function sampleLogs(n) {
  const out = execFileSync(CAIRN_SAMPLE, ['logs', String(n)], {encoding: 'utf8', maxBuffer: 64 << 20})
  const lines = out.split('\n').filter((l) => l.length > 0)
  if (lines.length !== n) throw new Error(`cairn-sample logs ${n} printed ${lines.length} lines`)
  return lines
}

let topicSeq = 0
/** A topic name unique to this process and test, valid for nsqd. */
function uniqueTopic(prefix) {
  topicSeq++
  return `${prefix}_${process.pid}_${topicSeq}`
}

/**
 * A raw NSQ V2 socket for tests the client library will not send (bad frames, empty bodies).
 * `frames` collects {type, data} (type 0 response, 1 error, 2 message); `closed` resolves on close.
 */
async function rawConnect(broker) {
  const sock = net.connect(broker.port, broker.host)
  const frames = []
  let buf = Buffer.alloc(0)
  let isClosed = false
  sock.on('data', (d) => {
    buf = Buffer.concat([buf, d])
    while (buf.length >= 8) {
      const size = buf.readUInt32BE(0)
      if (buf.length < 4 + size) break
      frames.push({type: buf.readUInt32BE(4), data: buf.subarray(8, 4 + size)})
      buf = buf.subarray(4 + size)
    }
  })
  sock.on('error', () => {})
  const closed = new Promise((resolve) =>
    sock.on('close', () => {
      isClosed = true
      resolve()
    })
  )
  await withTimeout(new Promise((resolve) => sock.once('connect', resolve)), WAIT_MS, 'raw TCP connect')
  sock.write('  V2')
  return {
    sock,
    frames,
    closed,
    isClosed: () => isClosed,
    /** Sends `line\n`, plus a 4-byte big-endian length and `body` when body is given. */
    send(line, body) {
      const parts = [Buffer.from(`${line}\n`)]
      if (body !== undefined) {
        const b = Buffer.isBuffer(body) ? body : Buffer.from(body)
        const len = Buffer.alloc(4)
        len.writeUInt32BE(b.length)
        parts.push(len, b)
      }
      sock.write(Buffer.concat(parts))
    },
    async nextFrame(ms = WAIT_MS, what = 'a frame') {
      const n = frames.length
      await waitUntil(() => frames.length > n, ms, what)
      return frames[n]
    },
    destroy() {
      sock.destroy()
    },
  }
}

module.exports = {
  CAIRND,
  WAIT_MS,
  sleep,
  withTimeout,
  waitUntil,
  startBroker,
  connectWriter,
  publish,
  deferPublish,
  publishEach,
  closeWriter,
  openReader,
  waitForCount,
  closeReader,
  readerConnection,
  sampleLogs,
  uniqueTopic,
  rawConnect,
}
