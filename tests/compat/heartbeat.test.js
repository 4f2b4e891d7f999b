'use strict'
// Heartbeats: with heartbeatInterval 1 s the broker sends _heartbeat_ every second, nsqjs answers
// NOP, and an idle Reader and Writer stay connected and usable. A client that never answers is
// dropped, so staying connected really depends on the answers.

const {describe, it, before, after} = require('node:test')
const assert = require('node:assert/strict')
const h = require('./lib/harness')

/** Counts the NOPs nsqjs writes on a connection (it sends one only to answer a heartbeat). */
function countNops(conn) {
  const counter = {nops: 0}
  const write = conn.write.bind(conn)
  conn.write = (data) => {
    if (Buffer.from(data).toString() === 'NOP\n') counter.nops++
    return write(data)
  }
  return counter
}

describe('heartbeats with nsqjs', () => {
  let broker
  const readers = []
  const writers = []

  before(async () => {
    broker = await h.startBroker()
  })
  after(async () => {
    for (const r of readers) await h.closeReader(r)
    for (const w of writers) h.closeWriter(w)
    if (broker) await broker.cleanup()
  })

  it('an idle Reader and Writer with heartbeatInterval 1 s stay connected and keep working', async () => {
    const topic = h.uniqueTopic('hb')
    const r = await h.openReader(broker, topic, 'ch', {heartbeatInterval: 1}, (msg) => msg.finish())
    readers.push(r)
    const w = await h.connectWriter(broker, {heartbeatInterval: 1})
    writers.push(w)
    const readerNops = countNops(h.readerConnection(r))
    const writerNops = countNops(w.conn)
    let writerClosed = false
    w.on('closed', () => (writerClosed = true))

    await h.sleep(3500)

    assert.equal(r.closedEvents, 0, 'the reader connection was dropped while idle')
    assert.equal(writerClosed, false, 'the writer connection was dropped while idle')
    assert.deepEqual(r.errors, [])
    assert.deepEqual(w.errors, [])
    assert.ok(readerNops.nops >= 2, `reader answered ${readerNops.nops} heartbeats in 3.5 s`)
    assert.ok(writerNops.nops >= 2, `writer answered ${writerNops.nops} heartbeats in 3.5 s`)

    await h.publish(w, topic, 'after the quiet spell')
    await h.waitForCount(r, 1)
    assert.equal(r.received[0].body, 'after the quiet spell')
  })

  it('a client that never answers heartbeats is disconnected', async () => {
    const raw = await h.rawConnect(broker)
    try {
      raw.send('IDENTIFY', JSON.stringify({heartbeat_interval: 1000, feature_negotiation: true}))
      const identify = await raw.nextFrame(h.WAIT_MS, 'the IDENTIFY response')
      assert.equal(identify.type, 0, `IDENTIFY answered ${identify.data}`)
      raw.send(`SUB ${h.uniqueTopic('hbraw')} ch`)
      const start = Date.now()
      await h.withTimeout(raw.closed, 6000, 'the broker to drop a client that ignores heartbeats')
      const heartbeats = raw.frames.filter((f) => f.type === 0 && f.data.toString() === '_heartbeat_')
      assert.ok(heartbeats.length >= 1, 'no _heartbeat_ was sent before the disconnect')
      assert.ok(Date.now() - start >= 1000, `dropped after only ${Date.now() - start} ms`)
    } finally {
      raw.destroy()
    }
  })
})
