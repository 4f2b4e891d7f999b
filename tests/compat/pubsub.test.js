'use strict'
// Publishing and fan-out through nsqjs: every channel of a topic gets every message, readers on one
// channel share its messages, MPUB keeps order, DPUB defers delivery.

const {describe, it, before, after} = require('node:test')
const assert = require('node:assert/strict')
const h = require('./lib/harness')

const ID_RE = /^[0-9a-f]{16}$/

describe('pub/sub with nsqjs', () => {
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

  const finishAll = (msg) => msg.finish()

  it('two channels on one topic each receive every message exactly once', async () => {
    const topic = h.uniqueTopic('fanout')
    const bodies = h.sampleLogs(200)
    const a = await h.openReader(broker, topic, 'archive', {maxInFlight: 50}, finishAll)
    const b = await h.openReader(broker, topic, 'indexer', {maxInFlight: 50}, finishAll)
    readers.push(a, b)

    await h.publishEach(writer, topic, bodies)
    await h.waitForCount(a, 200, 10000, 'channel archive to get 200')
    await h.waitForCount(b, 200, 10000, 'channel indexer to get 200')
    await h.sleep(300) // anything extra would show up here

    for (const [name, r] of [['archive', a], ['indexer', b]]) {
      assert.equal(r.received.length, 200, `channel ${name} got ${r.received.length} deliveries`)
      assert.deepEqual(r.received.map((m) => m.body).sort(), [...bodies].sort(), `channel ${name} bodies`)
      for (const m of r.received) {
        assert.match(m.id, ID_RE)
        assert.equal(m.attempts, 1, `channel ${name}: message ${m.id} attempts`)
      }
      assert.equal(new Set(r.received.map((m) => m.id)).size, 200, `channel ${name}: ids not unique`)
    }
    // A message keeps its id in every channel.
    const idOf = new Map(a.received.map((m) => [m.body, m.id]))
    for (const m of b.received) assert.equal(m.id, idOf.get(m.body), 'same message, different id per channel')
    assert.deepEqual([...a.errors, ...b.errors], [])
  })

  it('two readers on one channel share it: each message goes to exactly one of them', async () => {
    const topic = h.uniqueTopic('shared')
    const bodies = h.sampleLogs(200)
    // Each reader works on a message for 20 ms before finishing it, so a reader at its
    // maxInFlight leaves the rest of the channel to the other one.
    const slowFinish = (msg) => setTimeout(() => msg.finish(), 20)
    const r1 = await h.openReader(broker, topic, 'workers', {maxInFlight: 5}, slowFinish)
    const r2 = await h.openReader(broker, topic, 'workers', {maxInFlight: 5}, slowFinish)
    readers.push(r1, r2)

    await h.publish(writer, topic, bodies) // MPUB: the whole batch is there at once
    await h.waitUntil(
      () => r1.received.length + r2.received.length >= 200,
      15000,
      '200 deliveries across both readers',
      () => `${r1.received.length} + ${r2.received.length}`
    )
    await h.sleep(300)

    const total = r1.received.length + r2.received.length
    assert.equal(total, 200, `deliveries: ${r1.received.length} + ${r2.received.length}`)
    const ids1 = new Set(r1.received.map((m) => m.id))
    const both = r2.received.filter((m) => ids1.has(m.id))
    assert.deepEqual(both.map((m) => m.id), [], 'messages delivered to both readers')
    assert.deepEqual([...r1.received, ...r2.received].map((m) => m.body).sort(), [...bodies].sort())
    for (const m of [...r1.received, ...r2.received]) assert.equal(m.attempts, 1)
    assert.ok(r1.received.length >= 50 && r2.received.length >= 50,
      `uneven split while both readers were busy: ${r1.received.length} / ${r2.received.length}`)
  })

  it('two idle readers on one channel both get work from a steady trickle (as with nsqd)', async () => {
    // nsqd hands each message to the longest-waiting client of the channel, so idle consumers
    // take turns. A broker that keeps feeding the first reader while it has RDY left starves the
    // second one whenever traffic is light. 200 one-at-a-time messages: even a broker that gives
    // each reader a turn of up to 64 messages in a row splits them at least 128 / 72.
    const topic = h.uniqueTopic('trickle')
    const n = 200
    const r1 = await h.openReader(broker, topic, 'workers', {maxInFlight: 10}, finishAll)
    const r2 = await h.openReader(broker, topic, 'workers', {maxInFlight: 10}, finishAll)
    readers.push(r1, r2)
    for (let i = 0; i < n; i++) {
      await h.publish(writer, topic, `trickle-${i}`)
      await h.waitUntil(() => r1.received.length + r2.received.length > i, h.WAIT_MS, `trickle-${i}`)
    }
    await h.sleep(200)
    assert.equal(r1.received.length + r2.received.length, n)
    assert.ok(r1.received.length >= n / 4 && r2.received.length >= n / 4,
      `${n} messages split ${r1.received.length} / ${r2.received.length} between two idle readers`)
  })

  it('MPUB of 100 messages delivers all 100, in order', async () => {
    const topic = h.uniqueTopic('mpub')
    const bodies = h.sampleLogs(100)
    const r = await h.openReader(broker, topic, 'ch', {maxInFlight: 100}, finishAll)
    readers.push(r)

    await h.publish(writer, topic, bodies) // an array → one MPUB
    await h.waitForCount(r, 100)
    await h.sleep(200)

    assert.equal(r.received.length, 100)
    assert.deepEqual(r.received.map((m) => m.body), bodies, 'bodies differ or are out of order')
    const ids = r.received.map((m) => m.id)
    for (const id of ids) assert.match(id, ID_RE)
    for (let i = 1; i < ids.length; i++) {
      assert.ok(ids[i] > ids[i - 1], `ids not increasing at ${i}: ${ids[i - 1]} then ${ids[i]}`)
    }
  })

  it('binary and large bodies arrive byte for byte', async () => {
    const topic = h.uniqueTopic('bytes')
    const binary = Buffer.from(Array.from({length: 256}, (_, i) => i))
    const large = Buffer.alloc(900 * 1024)
    for (let i = 0; i < large.length; i++) large[i] = (i * 31 + 7) & 0xff
    const got = []
    const r = await h.openReader(broker, topic, 'ch', {maxInFlight: 2}, (msg) => {
      got.push(Buffer.from(msg.body))
      msg.finish()
    })
    readers.push(r)
    await h.publish(writer, topic, binary)
    await h.publish(writer, topic, large)
    await h.waitForCount(r, 2)
    assert.ok(got[0].equals(binary), 'the 256-byte binary body changed')
    assert.equal(got[1].length, large.length)
    assert.ok(got[1].equals(large), 'the 900 KiB body changed')
  })

  it('DPUB delivers no earlier than its delay, and does not hold back later messages', async () => {
    const topic = h.uniqueTopic('dpub')
    const r = await h.openReader(broker, topic, 'ch', {maxInFlight: 10}, finishAll)
    readers.push(r)
    const delay = 1500

    const sent = Date.now()
    await h.deferPublish(writer, topic, 'deferred', delay)
    await h.publish(writer, topic, 'immediate')
    await h.waitForCount(r, 2, delay + 3000, 'the deferred message')

    const byBody = new Map(r.received.map((m) => [m.body, m]))
    assert.deepEqual(r.received.map((m) => m.body), ['immediate', 'deferred'])
    const early = byBody.get('immediate').at - sent
    const late = byBody.get('deferred').at - sent
    assert.ok(early < delay, `a PUB after a DPUB waited for it: arrived after ${early} ms`)
    assert.ok(late >= delay - 10, `DPUB ${delay} ms arrived after only ${late} ms`)
    assert.ok(late < delay + 2000, `DPUB ${delay} ms arrived only after ${late} ms`)
    assert.equal(byBody.get('deferred').attempts, 1)
    await h.sleep(200)
    assert.equal(r.received.length, 2)
  })
})
