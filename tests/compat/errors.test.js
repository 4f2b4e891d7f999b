'use strict'
// Errors a client meets, with nsqd's codes and texts: what nsqjs reports for a bad topic or an
// oversize message, and, over a raw socket, the frames for what nsqjs will not send (an empty
// body, a bad channel, a garbage command). Fatal errors close that connection only; other
// clients keep working. --max-msg-size is 100 here.

const {describe, it, before, after} = require('node:test')
const assert = require('node:assert/strict')
const h = require('./lib/harness')

const FRAME_RESPONSE = 0
const FRAME_ERROR = 1

/** Publishes with a fresh Writer and returns the error nsqjs reported (fails if there was none). */
async function publishError(broker, topic, body) {
  const w = await h.connectWriter(broker)
  try {
    const err = await h.publish(w, topic, body).then(
      () => null,
      (e) => e
    )
    assert.ok(err, `publishing to ${JSON.stringify(topic)} succeeded`)
    // The connection is closed after a fatal error.
    await h.waitUntil(() => !w.ready, h.WAIT_MS, 'nsqjs to see the connection closed')
    return err
  } finally {
    h.closeWriter(w)
  }
}

/** Asserts that the raw connection gets one error frame with exactly `text`, then is closed. */
async function expectFatal(raw, text) {
  const f = await raw.nextFrame(h.WAIT_MS, `the error frame "${text}"`)
  assert.equal(f.type, FRAME_ERROR, `frame type ${f.type}: ${f.data}`)
  assert.equal(f.data.toString(), text)
  await h.withTimeout(raw.closed, h.WAIT_MS, `the broker to close the connection after ${text}`)
}

describe('errors (--max-msg-size 100)', () => {
  let broker
  let bystander // a Reader and Writer connected before the errors, used after them
  let bystanderWriter
  const topic = h.uniqueTopic('ok')

  before(async () => {
    broker = await h.startBroker({args: ['--max-msg-size', '100']})
    bystander = await h.openReader(broker, topic, 'ch', {maxInFlight: 10}, (m) => m.finish())
    bystanderWriter = await h.connectWriter(broker)
    await h.publish(bystanderWriter, topic, 'before')
    await h.waitForCount(bystander, 1)
  })
  after(async () => {
    await h.closeReader(bystander)
    h.closeWriter(bystanderWriter)
    if (broker) await broker.cleanup()
  })

  it('a bad topic name: nsqjs reports E_BAD_TOPIC', async () => {
    // Not "bad topic!": nsqjs sends the name unquoted, so on the wire that is `PUB bad topic!`,
    // whose topic parameter is the valid name "bad" (nsqd, too, ignores the extra parameter).
    const err = await publishError(broker, 'bad!topic', 'x')
    assert.match(err.message, /E_BAD_TOPIC/)
    assert.match(err.message, /PUB topic name "bad!topic" is not valid/)
  })

  it('an oversize message: nsqjs reports E_BAD_MESSAGE; a message at the limit is accepted', async () => {
    const err = await publishError(broker, h.uniqueTopic('big'), 'x'.repeat(200))
    assert.match(err.message, /E_BAD_MESSAGE/)
    assert.match(err.message, /200 > 100/)
    const w = await h.connectWriter(broker)
    try {
      await h.publish(w, h.uniqueTopic('limit'), 'y'.repeat(100))
    } finally {
      h.closeWriter(w)
    }
  })

  it('an empty body: nsqjs refuses it, and the broker answers E_BAD_MESSAGE and closes', async () => {
    const w = await h.connectWriter(broker)
    try {
      assert.throws(() => w.publish(h.uniqueTopic('empty'), ''), /empty message/)
    } finally {
      h.closeWriter(w)
    }
    const raw = await h.rawConnect(broker)
    try {
      raw.send(`PUB ${h.uniqueTopic('empty')}`, Buffer.alloc(0))
      await expectFatal(raw, 'E_BAD_MESSAGE PUB invalid message body size 0')
    } finally {
      raw.destroy()
    }
  })

  it('a bad channel name on SUB: E_BAD_CHANNEL and the connection is closed', async () => {
    const raw = await h.rawConnect(broker)
    try {
      raw.send(`SUB ${h.uniqueTopic('sub')} bad!chan`)
      await expectFatal(raw, 'E_BAD_CHANNEL SUB channel name "bad!chan" is not valid')
    } finally {
      raw.destroy()
    }
  })

  it('a garbage command: E_INVALID and the connection is closed', async () => {
    const raw = await h.rawConnect(broker)
    try {
      raw.send('FROB 1 2 3')
      await expectFatal(raw, 'E_INVALID invalid command FROB')
    } finally {
      raw.destroy()
    }
  })

  it('FIN of an unknown id is E_FIN_FAILED and not fatal', async () => {
    const raw = await h.rawConnect(broker)
    try {
      raw.send(`SUB ${h.uniqueTopic('fin')} ch`) // FIN is only valid once subscribed
      const sub = await raw.nextFrame(h.WAIT_MS, 'the SUB answer')
      assert.equal(sub.data.toString(), 'OK')
      raw.send('FIN 00000000000fffff')
      const f = await raw.nextFrame()
      assert.equal(f.type, FRAME_ERROR)
      assert.equal(f.data.toString(), 'E_FIN_FAILED FIN 00000000000fffff failed ID not in flight')
      raw.send(`PUB ${h.uniqueTopic('afterfin')}`, 'still here')
      const ok = await raw.nextFrame(h.WAIT_MS, 'the PUB answer after E_FIN_FAILED')
      assert.equal(ok.type, FRAME_RESPONSE, `${ok.data}`)
      assert.equal(ok.data.toString(), 'OK')
      assert.equal(raw.isClosed(), false)
    } finally {
      raw.destroy()
    }
  })

  it('clients connected before those errors keep working', async () => {
    assert.equal(bystander.closedEvents, 0, 'the bystander reader was disconnected')
    assert.deepEqual(bystander.errors, [])
    assert.equal(bystanderWriter.ready, true, 'the bystander writer was disconnected')
    await h.publish(bystanderWriter, topic, 'after')
    await h.waitForCount(bystander, 2)
    assert.deepEqual(bystander.received.map((m) => m.body), ['before', 'after'])
  })
})
