'use strict'
// A clean restart keeps a channel's progress: after SIGTERM and a restart on the same data dir,
// a reader on the same channel gets exactly the messages that were not finished, and none of the
// finished ones. (A kill -9 crash is tested elsewhere.)

const {describe, it, after} = require('node:test')
const assert = require('node:assert/strict')
const h = require('./lib/harness')

describe('restart with nsqjs', () => {
  const cleanups = []
  after(async () => {
    for (const c of cleanups.reverse()) await c().catch(() => {})
  })

  it('after SIGTERM and a restart, only the unfinished messages are delivered', async () => {
    const topic = h.uniqueTopic('durable')
    const bodies = h.sampleLogs(100).map((line, i) => `${String(i).padStart(3, '0')} ${line}`)
    const first = await h.startBroker()
    cleanups.push(() => first.cleanup()) // removes the data dir, after the second broker stopped

    const writer = await h.connectWriter(first)
    cleanups.push(async () => h.closeWriter(writer))
    await h.publish(writer, topic, bodies.slice(0, 50))
    await h.publish(writer, topic, bodies.slice(50))

    // maxInFlight 1: the broker sends message n+1 only after it has taken the FIN of message n,
    // so when the 51st arrives (and is left unanswered) exactly the first 50 are finished.
    const reader = await h.openReader(first, topic, 'ch', {maxInFlight: 1}, (msg, r) => {
      if (r.received.length <= 50) msg.finish()
    })
    cleanups.push(() => h.closeReader(reader))
    await h.waitForCount(reader, 51)
    await h.sleep(200)
    assert.equal(reader.received.length, 51, 'more than one message in flight at RDY 1')
    assert.deepEqual(reader.received.map((m) => m.body), bodies.slice(0, 51))

    await h.closeReader(reader)
    h.closeWriter(writer)
    const exit = await first.stop()
    assert.deepEqual(exit, {code: 0, signal: null}, `cairnd did not stop cleanly:\n${first.log()}`)

    const second = await h.startBroker({dataDir: first.dataDir})
    cleanups.push(() => second.cleanup())
    const again = await h.openReader(second, topic, 'ch', {maxInFlight: 100}, (msg) => msg.finish())
    cleanups.push(() => h.closeReader(again))
    await h.waitForCount(again, 50, h.WAIT_MS, 'the 50 unfinished messages after the restart')
    await h.sleep(500) // a finished one delivered again would show up here

    const got = again.received.map((m) => m.body)
    const finishedAgain = got.filter((b) => bodies.indexOf(b) < 50)
    assert.deepEqual(finishedAgain.map((b) => b.slice(0, 3)), [], 'finished messages delivered again')
    assert.equal(got.length, 50, `got ${got.length} messages after the restart`)
    assert.deepEqual([...got].sort(), bodies.slice(50).sort())
    // The one that was in flight at shutdown counts its earlier attempt; the rest are new.
    const attempts = new Map(again.received.map((m) => [m.body, m.attempts]))
    assert.ok(attempts.get(bodies[50]) >= 1)
    for (const b of bodies.slice(51)) assert.equal(attempts.get(b), 1, `attempts of ${b.slice(0, 3)}`)
    // Ids are topic offsets and survive the restart.
    const idBefore = reader.received[50].id
    assert.equal(again.received.find((m) => m.body === bodies[50]).id, idBefore)
  })
})
