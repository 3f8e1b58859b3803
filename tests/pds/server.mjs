// A PLC directory or the reference ATProto PDS for toile's publish tests, on 127.0.0.1 only.
//
//   node server.mjs plc [--port N]
//   node server.mjs pds --plc-url http://localhost:N --data DIR [--port N] [--blob-limit BYTES]
//
// Prints one JSON line {"service", "port", "url", "pid"} on stdout once the server listens,
// then serves until SIGTERM or SIGINT. Both servers call app.listen(port), which binds every
// interface: listen is wrapped here so that they bind 127.0.0.1 alone. The PDS's secrets come
// from the environment when set (so a restarted PDS keeps its identity), else are generated.
import { randomBytes } from 'node:crypto'
import { mkdirSync } from 'node:fs'
import net from 'node:net'
import path from 'node:path'

const HOST = '127.0.0.1'

function parseArgs(argv) {
  const [service, ...rest] = argv
  const options = {}
  for (let i = 0; i < rest.length; i += 2) {
    if (!rest[i].startsWith('--') || rest[i + 1] === undefined) {
      throw new Error(`bad argument ${rest[i]}`)
    }
    options[rest[i].slice(2)] = rest[i + 1]
  }
  return { service, options }
}

// A free port on the loopback interface. The PDS must know its port before it starts,
// because its public URL (written into every DID document it creates) names it.
function freePort() {
  return new Promise((resolve, reject) => {
    const probe = net.createServer()
    probe.once('error', reject)
    probe.listen(0, HOST, () => {
      const { port } = probe.address()
      probe.close(() => resolve(port))
    })
  })
}

function bindLoopback(app) {
  const listen = app.listen.bind(app)
  app.listen = (port, ...rest) => listen(port, HOST, ...rest)
}

async function startPlc(options) {
  const { PlcServer, Database } = (await import('@did-plc/server')).default
  const port = options.port ? Number(options.port) : await freePort()
  const server = PlcServer.create({ db: Database.mock(), port })
  bindLoopback(server.app)
  await server.start()
  return { server, port }
}

async function startPds(options) {
  if (!options['plc-url'] || !options.data) {
    throw new Error('pds needs --plc-url and --data')
  }
  const { Secp256k1Keypair } = await import('@atproto/crypto')
  const { PDS, envToCfg, envToSecrets, readEnv } = await import('@atproto/pds')
  const port = options.port ? Number(options.port) : await freePort()
  const data = path.resolve(options.data)
  mkdirSync(path.join(data, 'blobs'), { recursive: true })
  const env = process.env
  const rotationKey = env.PDS_PLC_ROTATION_KEY_K256_PRIVATE_KEY_HEX
    ?? Buffer.from(await (await Secp256k1Keypair.create({ exportable: true })).export()).toString('hex')
  Object.assign(env, {
    PDS_DEV_MODE: 'true',
    PDS_HOSTNAME: 'localhost',
    PDS_PORT: String(port),
    PDS_DATA_DIRECTORY: data,
    PDS_BLOBSTORE_DISK_LOCATION: path.join(data, 'blobs'),
    PDS_BLOB_UPLOAD_LIMIT: options['blob-limit'] ?? env.PDS_BLOB_UPLOAD_LIMIT ?? String(5 * 1024 * 1024),
    PDS_INVITE_REQUIRED: 'false',
    PDS_JWT_SECRET: env.PDS_JWT_SECRET ?? randomBytes(16).toString('hex'),
    PDS_ADMIN_PASSWORD: env.PDS_ADMIN_PASSWORD ?? randomBytes(16).toString('hex'),
    PDS_PLC_ROTATION_KEY_K256_PRIVATE_KEY_HEX: rotationKey,
    PDS_DISABLE_SSRF_PROTECTION: 'true',
    PDS_DID_PLC_URL: options['plc-url'],
  })
  const parsed = readEnv()
  const server = await PDS.create(envToCfg(parsed), envToSecrets(parsed))
  bindLoopback(server.app)
  await server.start()
  return { server, port }
}

async function main() {
  const { service, options } = parseArgs(process.argv.slice(2))
  const starters = { plc: startPlc, pds: startPds }
  if (!starters[service]) {
    throw new Error(`unknown service ${service}: use plc or pds`)
  }
  const { server, port } = await starters[service](options)
  let stopping = false
  const stop = async () => {
    if (stopping) return
    stopping = true
    try {
      await server.destroy()
    } finally {
      process.exit(0)
    }
  }
  process.on('SIGTERM', stop)
  process.on('SIGINT', stop)
  process.stdout.write(
    JSON.stringify({ service, port, url: `http://localhost:${port}`, pid: process.pid }) + '\n',
  )
}

main().catch((error) => {
  process.stderr.write(`${error.stack ?? error}\n`)
  process.exit(1)
})
