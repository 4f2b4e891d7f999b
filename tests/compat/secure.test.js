'use strict'
// nsqjs over TLS, deflate and snappy, alone and together: what a Writer publishes a Reader gets,
// each connection negotiated as asked. Certificates are made for the run with openssl; nsqjs
// verifies cairnd's against the test CA.

const {describe, it, before, after} = require('node:test')
const assert = require('node:assert/strict')
const {execFileSync} = require('node:child_process')
const fs = require('node:fs')
const os = require('node:os')
const path = require('node:path')
const h = require('./lib/harness')

// The test certificates every suite uses (tests/server/make_test_certs.sh).
function makeCertificates(dir) {
  execFileSync('bash', [path.join(__dirname, '..', 'server', 'make_test_certs.sh'), dir], {stdio: 'ignore'})
}

describe('nsqjs over TLS and compression', () => {
  let broker
  let dir
  let ca

  before(async () => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'cairn-compat-tls-'))
    makeCertificates(dir)
    ca = fs.readFileSync(path.join(dir, 'ca.pem'))
    broker = await h.startBroker({
      args: ['--tls-cert', path.join(dir, 'server.pem'), '--tls-key', path.join(dir, 'server.key')],
    })
  })
  after(async () => {
    if (broker) await broker.cleanup()
    if (dir) fs.rmSync(dir, {recursive: true, force: true})
  })

  const cases = [
    {name: 'tls', options: {tls: true}},
    {name: 'deflate', options: {deflate: true, deflateLevel: 9}},
    {name: 'snappy', options: {snappy: true}},
    {name: 'tls and deflate', options: {tls: true, deflate: true}},
    {name: 'tls and snappy', options: {tls: true, snappy: true}},
  ]
  for (const {name, options} of cases) {
    it(`publishes and consumes with ${name}`, async () => {
      const withCa = options.tls ? {...options, ca} : options
      const topic = h.uniqueTopic(name.replace(/ /g, '_'))
      const writer = await h.connectWriter(broker, withCa)
      const reader = await h.openReader(broker, topic, 'ch', {maxInFlight: 100, ...withCa}, (m) => m.finish())
      try {
        const bodies = h.sampleLogs(300)
        await h.publish(writer, topic, bodies.slice(0, 100))
        await h.publishEach(writer, topic, bodies.slice(100))
        await h.waitForCount(reader, 300, 10000, `300 messages with ${name}`)
        assert.deepEqual(reader.received.map((r) => r.body).sort(), bodies.map(String).sort())
        assert.deepEqual(writer.errors, [])
        assert.deepEqual(reader.errors, [])
        const stats = await (await fetch(`http://127.0.0.1:${broker.httpPort}/stats?format=json&topic=${topic}`)).json()
        const client = stats.topics[0].channels[0].clients[0]
        assert.equal(client.tls, Boolean(options.tls))
        assert.equal(client.deflate, Boolean(options.deflate))
        assert.equal(client.snappy, Boolean(options.snappy))
      } finally {
        await h.closeReader(reader)
        h.closeWriter(writer)
      }
    })
  }
})
