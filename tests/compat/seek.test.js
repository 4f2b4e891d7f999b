'use strict'
// Cairn's channel positions over the HTTP API, as a subscribed nsqjs Reader sees them: a channel
// created at an offset starts there, and a seek (to earliest, an offset or a time) moves a channel
// in place, so its connected reader gets the messages from the new position on, without a
// reconnect. Offsets are 0-based positions in the topic's log, in publish order.

const {describe, it, before, after} = require('node:test')
const assert = require('node:assert/strict')
const h = require('./lib/harness')

const N = 20

/** POSTs to cairnd's HTTP API (no body unless given); resolves to {status, body (string)}. */
async function post(broker, target, body) {
  const url = `http://${broker.host}:${broker.httpPort}${target}`
  const res = await fetch(url, {method: 'POST', body, signal: AbortSignal.timeout(h.WAIT_MS)})
  return {status: res.status, body: await res.text()}
}

/** POSTs and asserts a 200 with `expected` as the body. */
async function postOk(broker, target, body, expected = '') {
  const res = await post(broker, target, body)
  assert.deepEqual(res, {status: 200, body: expected}, `POST ${target}`)
}

describe('channel create-at and seek over HTTP with nsqjs', () => {
  let broker
  let writer
  const readers = []

  before(async () => {
    broker = await h.startBroker()
    writer = await h.connectWriter(broker)
  })
  after(async () => {
    for (const r of readers) await h.closeReader(r)
    h.closeWriter(writer)
    if (broker) await broker.cleanup()
  })

  const open = async (topic, channel, options, onMessage) => {
    const r = await h.openReader(broker, topic, channel, options, onMessage)
    readers.push(r)
    return r
  }
  const finishAll = (msg) => msg.finish()

  // N numbered sample records, so a delivery maps back to its offset.
  const numbered = () => h.sampleLogs(N).map((line, i) => `${String(i).padStart(2, '0')} ${line}`)
  // The offsets of a reader's deliveries from the `from`-th one on (-1 for a body never published).
  const offsetsOf = (r, bodies, from = 0) => r.received.slice(from).map((m) => bodies.indexOf(m.body))
  const range = (lo, hi) => Array.from({length: hi - lo}, (_, i) => lo + i)

  it('create-at-start: a channel created at offset:15 delivers exactly messages 15..19', async () => {
    const topic = h.uniqueTopic('late')
    const bodies = numbered()
    await h.publishEach(writer, topic, bodies)
    await postOk(broker, `/channel/create?topic=${topic}&channel=late&start=offset:15`)

    const r = await open(topic, 'late', {maxInFlight: N}, finishAll)
    await h.waitForCount(r, 5, h.WAIT_MS, 'messages 15..19 on channel late')
    await h.sleep(1000) // anything before offset 15 (or a repeat) would show up here
    assert.deepEqual(offsetsOf(r, bodies), range(15, N))
    assert.deepEqual(r.errors, [])
  })

  it('seek with a subscribed Reader: earliest replays all 20, offset:18 replays 18 and 19, no reconnect', async () => {
    const topic = h.uniqueTopic('replay')
    const bodies = numbered()
    const r = await open(topic, 'replay', {maxInFlight: N}, finishAll) // the channel exists before the publishes
    const conn = h.readerConnection(r)
    let connects = 0
    r.on('nsqd_connected', () => connects++)

    await h.publishEach(writer, topic, bodies)
    await h.waitForCount(r, N)
    await h.sleep(300) // the FINs reach the broker before the seek
    assert.deepEqual(offsetsOf(r, bodies), range(0, N), 'first pass')

    await postOk(broker, `/channel/seek?topic=${topic}&channel=replay&to=earliest`)
    await h.waitForCount(r, 2 * N, h.WAIT_MS, 'all 20 again after seek to=earliest')
    await h.sleep(300)
    assert.deepEqual(offsetsOf(r, bodies, N), range(0, N), 'after seek to=earliest')

    await postOk(broker, `/channel/seek?topic=${topic}&channel=replay&to=offset:18`)
    await h.waitForCount(r, 2 * N + 2, h.WAIT_MS, 'messages 18, 19 after seek to=offset:18')
    await h.sleep(1000)
    assert.deepEqual(offsetsOf(r, bodies, 2 * N), [18, 19], 'after seek to=offset:18')

    assert.equal(r.closedEvents, 0, 'the reader was disconnected by a seek')
    assert.equal(connects, 0, 'the reader reconnected')
    assert.equal(h.readerConnection(r), conn, 'the reader is on a different connection')
    assert.deepEqual(r.errors, [])
  })

  it('seek by time: to=time:T replays exactly the messages published after T (published over HTTP)', async () => {
    const topic = h.uniqueTopic('bytime')
    const bodies = numbered()
    const r = await open(topic, 'bytime', {maxInFlight: N}, finishAll)

    let cut
    for (let i = 0; i < N; i++) {
      if (i === 10) {
        await h.sleep(25)
        cut = new Date().toISOString() // RFC 3339, millisecond precision, Z
        await h.sleep(25)
      }
      await postOk(broker, `/pub?topic=${topic}`, bodies[i], 'OK')
    }
    await h.waitForCount(r, N)
    await h.sleep(300)
    assert.deepEqual(offsetsOf(r, bodies), range(0, N), 'first pass')

    await postOk(broker, `/channel/seek?topic=${topic}&channel=bytime&to=time:${cut}`)
    await h.waitForCount(r, N + 10, h.WAIT_MS, `messages 10..19 after seek to=time:${cut}`)
    await h.sleep(1000)
    assert.deepEqual(offsetsOf(r, bodies, N), range(10, N), `after seek to=time:${cut}`)
    assert.equal(r.closedEvents, 0)
    assert.deepEqual(r.errors, [])
  })

  it('seek keeps what is in flight: its FIN is accepted, and past the new position the message comes again after it', async () => {
    const topic = h.uniqueTopic('inflight')
    const bodies = numbered()
    const r = await open(topic, 'ch', {maxInFlight: N}) // leaves every message unanswered
    await h.publishEach(writer, topic, bodies)
    await h.waitForCount(r, N)

    await postOk(broker, `/channel/seek?topic=${topic}&channel=ch&to=offset:15`)
    // 15..19 are still in flight to this reader: nothing is sent twice while they are.
    await h.sleep(300)
    assert.equal(r.received.length, N, 'a message in flight was sent again before it was settled')

    r.received[3].msg.finish() // offset 3, before the new position: settled, nothing more
    r.received[16].msg.finish() // offset 16, past it: settled, and delivered again
    await h.waitForCount(r, N + 1, h.WAIT_MS, 'message 16 again after its FIN')
    assert.deepEqual(offsetsOf(r, bodies, N), [16])
    for (const [i, m] of r.received.entries()) {
      if (i !== 3 && i !== 16) m.msg.finish()
    }
    await h.waitForCount(r, N + 5, h.WAIT_MS, '15, 17, 18, 19 again after their FINs')
    assert.deepEqual(offsetsOf(r, bodies, N).sort((a, b) => a - b), range(15, N))
    for (const m of r.received.slice(N)) m.msg.finish()
    await h.publish(writer, topic, 'after the seek')
    await h.waitForCount(r, N + 6, h.WAIT_MS, 'a new message on the same connection')
    assert.equal(r.received[N + 5].body, 'after the seek')
    assert.equal(r.closedEvents, 0, 'the reader was disconnected')
    assert.deepEqual(r.errors, [], 'no FIN failed')
  })

  it('a bad start or seek position is a 400 with INVALID_ARG_START / INVALID_ARG_TO', async () => {
    const topic = h.uniqueTopic('badpos')
    await h.publish(writer, topic, 'x')
    assert.deepEqual(await post(broker, `/channel/create?topic=${topic}&channel=c&start=sometime`), {
      status: 400,
      body: '{"message":"INVALID_ARG_START"}',
    })
    assert.deepEqual(await post(broker, `/channel/create?topic=${topic}&channel=c&start=time:yesterday`), {
      status: 400,
      body: '{"message":"INVALID_ARG_START"}',
    })
    await postOk(broker, `/channel/create?topic=${topic}&channel=c&start=earliest`)
    assert.deepEqual(await post(broker, `/channel/seek?topic=${topic}&channel=c&to=offset:`), {
      status: 400,
      body: '{"message":"INVALID_ARG_TO"}',
    })
  })
})
