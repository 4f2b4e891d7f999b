'use strict'
// Delivery guarantees as an nsqjs consumer sees them, with a short --msg-timeout: FIN ends a
// message, REQ redelivers it (now or after a delay), an unanswered message comes back after the
// message timeout, TOUCH postpones that, and RDY (maxInFlight) bounds what is outstanding.

const {describe, it, before, after} = require('node:test')
const assert = require('node:assert/strict')
const h = require('./lib/harness')

const MSG_TIMEOUT = 2000 // --msg-timeout below
// How much earlier than its due time a redelivery may be seen: the first delivery is timed when
// the client got it, a little after the broker sent it and started the clock.
const EARLY_SLACK = 50
const LATE_SLACK = 1500

describe('delivery with nsqjs (--msg-timeout 2s)', () => {
  let broker
  let writer
  const readers = []

  before(async () => {
    broker = await h.startBroker({args: ['--msg-timeout', '2s']})
    writer = await h.connectWriter(broker)
  })
  after(async () => {
    for (const r of readers) await h.closeReader(r)
    h.closeWriter(writer)
    if (broker) await broker.cleanup()
  })

  const open = async (topic, options, onMessage) => {
    const r = await h.openReader(broker, topic, 'ch', options, onMessage)
    readers.push(r)
    return r
  }

  it('the broker tells nsqjs the configured message timeout', async () => {
    const r = await open(h.uniqueTopic('identify'), {})
    assert.equal(h.readerConnection(r).msgTimeout, MSG_TIMEOUT)
  })

  it('FIN: finished messages are not delivered again', async () => {
    const topic = h.uniqueTopic('fin')
    const bodies = h.sampleLogs(10)
    const r = await open(topic, {maxInFlight: 10}, (msg) => msg.finish())
    await h.publishEach(writer, topic, bodies)
    await h.waitForCount(r, 10)
    await h.sleep(MSG_TIMEOUT + 1000)
    assert.deepEqual(r.received.map((m) => m.body), bodies)
    assert.deepEqual(r.received.map((m) => m.attempts), Array(10).fill(1), 'redelivered after FIN')
    assert.deepEqual(r.errors, [])
  })

  it('REQ with no delay: redelivered at once with attempts 2', async () => {
    const topic = h.uniqueTopic('req0')
    let requeuedAt = 0
    const r = await open(topic, {maxInFlight: 1}, (msg) => {
      if (msg.attempts === 1) {
        requeuedAt = Date.now()
        msg.requeue(0, false) // false: no client-side backoff (RDY 0) in this test
      } else {
        msg.finish()
      }
    })
    await h.publish(writer, topic, 'again')
    await h.waitForCount(r, 2)
    const [first, second] = r.received
    assert.equal(second.id, first.id)
    assert.equal(second.body, 'again')
    assert.deepEqual([first.attempts, second.attempts], [1, 2])
    const gap = second.at - requeuedAt
    assert.ok(gap < MSG_TIMEOUT / 2, `REQ 0 redelivered only after ${gap} ms`)
    await h.sleep(300)
    assert.equal(r.received.length, 2)
  })

  it('REQ with a delay: redelivered no earlier than the delay, with attempts 2', async () => {
    const topic = h.uniqueTopic('reqdelay')
    const delay = 1500
    let requeuedAt = 0
    const r = await open(topic, {maxInFlight: 1}, (msg) => {
      if (msg.attempts === 1) {
        requeuedAt = Date.now()
        msg.requeue(delay, false)
      } else {
        msg.finish()
      }
    })
    await h.publish(writer, topic, 'later')
    await h.waitForCount(r, 2, delay + LATE_SLACK + 2000, 'the requeued message')
    const [first, second] = r.received
    assert.equal(second.id, first.id)
    assert.deepEqual([first.attempts, second.attempts], [1, 2])
    const gap = second.at - requeuedAt
    assert.ok(gap >= delay - 10, `REQ ${delay} ms redelivered after only ${gap} ms`)
    assert.ok(gap <= delay + LATE_SLACK, `REQ ${delay} ms redelivered only after ${gap} ms`)
  })

  it('REQ with nsqjs backoff: nothing arrives while the reader is at RDY 0', async () => {
    // msg.requeue(0) backs the reader off: nsqjs sends RDY 0 before the REQ, and RDY 1 when the
    // backoff (about 280 ms with maxBackoffDuration 10 s) is over.
    const topic = h.uniqueTopic('reqbackoff')
    let requeuedAt = 0
    let backoffMs = 0
    const r = await open(topic, {maxInFlight: 5, maxBackoffDuration: 10}, (msg, reader) => {
      if (msg.attempts === 1) {
        requeuedAt = Date.now()
        msg.requeue(0)
        backoffMs = reader.readerRdy.backoffTimer.getInterval() * 1000
      } else {
        msg.finish()
      }
    })
    await h.publish(writer, topic, 'backoff')
    await h.waitForCount(r, 2, 5000, 'redelivery after the backoff')
    const [first, second] = r.received
    assert.equal(second.id, first.id)
    assert.deepEqual([first.attempts, second.attempts], [1, 2])
    assert.ok(backoffMs > 100, `unexpected nsqjs backoff ${backoffMs} ms`)
    const gap = second.at - requeuedAt
    assert.ok(gap >= backoffMs - 10, `delivered ${gap} ms after REQ, during a ${backoffMs} ms RDY 0`)
  })

  it('maxAttempts: attempts count up over REQs and nsqjs discards (FINs) the message past the limit', async () => {
    const topic = h.uniqueTopic('attempts')
    const discarded = []
    const r = await open(topic, {maxInFlight: 1, maxAttempts: 3}, (msg) => msg.requeue(0, false))
    r.on('discard', (msg) => discarded.push(msg.attempts))
    await h.publish(writer, topic, 'poison')
    await h.waitUntil(() => discarded.length === 1, h.WAIT_MS, 'nsqjs to discard the message')
    assert.deepEqual(r.received.map((m) => m.attempts), [1, 2, 3])
    assert.deepEqual(discarded, [4])
    await h.sleep(MSG_TIMEOUT + 500) // the automatic FIN took: no further delivery
    assert.equal(r.received.length, 3)
    assert.deepEqual(r.errors, [])
  })

  it('a per-client msg_timeout from IDENTIFY (nsqjs messageTimeout) is honoured', async () => {
    const topic = h.uniqueTopic('clienttimeout')
    const r = await open(topic, {maxInFlight: 1, messageTimeout: 1000}, (msg) => {
      if (msg.attempts >= 2) msg.finish()
    })
    assert.equal(h.readerConnection(r).msgTimeout, 1000)
    await h.publish(writer, topic, 'quick')
    await h.waitForCount(r, 2, 1000 + LATE_SLACK + 1000, 'the redelivery after 1 s')
    const gap = r.received[1].at - r.received[0].at
    assert.ok(gap >= 1000 - EARLY_SLACK && gap < MSG_TIMEOUT, `redelivered after ${gap} ms, not ~1000`)
    assert.equal(r.received[1].attempts, 2)
  })

  it('timeout: an unanswered message is redelivered after the message timeout, attempts+1', async () => {
    const topic = h.uniqueTopic('timeout')
    const r = await open(topic, {maxInFlight: 1}, (msg) => {
      if (msg.attempts >= 2) msg.finish()
    })
    await h.publish(writer, topic, 'slow')
    await h.waitForCount(r, 2, MSG_TIMEOUT + LATE_SLACK + 1000, 'the timed-out message')
    const [first, second] = r.received
    assert.equal(second.id, first.id)
    assert.equal(second.body, 'slow')
    assert.deepEqual([first.attempts, second.attempts], [1, 2])
    const gap = second.at - first.at
    assert.ok(gap >= MSG_TIMEOUT - EARLY_SLACK, `timed out after only ${gap} ms`)
    assert.ok(gap <= MSG_TIMEOUT + LATE_SLACK, `timed out only after ${gap} ms`)
  })

  it('TOUCH before the deadline postpones the redelivery by a full message timeout', async () => {
    const topic = h.uniqueTopic('touch')
    const touchAfter = 1200
    let touchedAt = 0
    const r = await open(topic, {maxInFlight: 1}, (msg) => {
      if (msg.attempts === 1) {
        setTimeout(() => {
          touchedAt = Date.now()
          msg.touch()
        }, touchAfter)
      } else {
        msg.finish()
      }
    })
    await h.publish(writer, topic, 'touched')
    await h.waitForCount(r, 1)
    // Past the original deadline: still only the one delivery.
    await h.sleep(MSG_TIMEOUT + 300)
    assert.equal(r.received.length, 1, `redelivered ${r.received[1] && r.received[1].at - r.received[0].at} ms after delivery despite TOUCH at ${touchAfter} ms`)
    await h.waitForCount(r, 2, touchAfter + MSG_TIMEOUT + LATE_SLACK, 'the redelivery after the touched deadline')
    const [first, second] = r.received
    assert.equal(second.id, first.id)
    assert.deepEqual([first.attempts, second.attempts], [1, 2])
    const sinceTouch = second.at - touchedAt
    assert.ok(sinceTouch >= MSG_TIMEOUT - EARLY_SLACK, `redelivered ${sinceTouch} ms after TOUCH`)
    assert.ok(sinceTouch <= MSG_TIMEOUT + LATE_SLACK, `redelivered only ${sinceTouch} ms after TOUCH`)
    assert.deepEqual(r.errors, [], 'TOUCH was refused')
  })

  it('RDY: a reader with maxInFlight 5 that never finishes has exactly 5 outstanding', async () => {
    const topic = h.uniqueTopic('rdy')
    await h.publish(writer, topic, h.sampleLogs(50)) // already in the log when the channel appears
    const r = await open(topic, {maxInFlight: 5})
    await h.sleep(800) // well inside the 2 s message timeout
    assert.equal(r.received.length, 5, `received ${r.received.length} with RDY 5 and nothing finished`)
    assert.deepEqual(r.received.map((m) => m.attempts), Array(5).fill(1))
    // Finishing one makes room for exactly one more.
    r.received[0].msg.finish()
    await h.sleep(300)
    assert.equal(r.received.length, 6, `after one FIN: ${r.received.length} received`)
    assert.equal(new Set(r.received.map((m) => m.id)).size, 6)
  })
})
