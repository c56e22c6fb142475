// A quorum-registry client in Node.js, from the .proto alone (@grpc/grpc-js +
// @grpc/proto-loader): register a name, call it, look it up, watch it.
//
//   npm ci && node client.js 127.0.0.1:7400 my-echo
//
// It prints one JSON line with what it saw. Errors are decided by their machine-readable
// reason (docs/protocol.md), never by their message: the reason travels in the
// google.rpc.Status details and, for simple clients like this one, also in the
// `registry-reason` trailer.
'use strict';

const path = require('path');
const grpc = require('@grpc/grpc-js');
const protoLoader = require('@grpc/proto-loader');

const PROTO = path.join(__dirname, '..', '..', 'protos', 'registry', 'v1', 'registry.proto');
// Refused before anything ran: safe to retry, even a write (docs/protocol.md).
const RETRYABLE = new Set([
  'NO_MEMBERS', 'NO_QUORUM', 'NOT_LEADER', 'NOT_RUN', 'NO_LEASE', 'NOT_OWNER', 'MOVING',
  'WAITING', 'UNREACHABLE',
]);

const definition = protoLoader.loadSync(PROTO, {
  keepCase: true, longs: String, enums: String, defaults: true,
});
const { Registry } = grpc.loadPackageDefinition(definition).registry.v1;

function reasonOf(err) {
  const values = err.metadata ? err.metadata.get('registry-reason') : [];
  return values.length ? String(values[0]) : '';
}

function unary(client, method, request, timeoutS = 5) {
  return new Promise((resolve, reject) => {
    const deadline = new Date(Date.now() + timeoutS * 1000);
    client[method](request, { deadline }, (err, reply) => (err ? reject(err) : resolve(reply)));
  });
}

// Retry a definite refusal (by reason) with backoff until the deadline.
async function withRetry(fn, deadlineS = 15) {
  const end = Date.now() + deadlineS * 1000;
  for (let attempt = 0; ; attempt++) {
    try {
      return await fn();
    } catch (err) {
      if (!RETRYABLE.has(reasonOf(err)) || Date.now() > end) throw err;
      await new Promise((r) => setTimeout(r, Math.min(1000, 25 * 2 ** attempt)));
    }
  }
}

// Read watch events for `prefix` until the listing is complete (SYNCED).
function watchUntilSynced(client, prefix, timeoutS = 10) {
  return new Promise((resolve, reject) => {
    const seen = [];
    const call = client.Watch({ prefix });
    const timer = setTimeout(() => { call.cancel(); reject(new Error('watch: no SYNCED')); },
      timeoutS * 1000);
    call.on('data', (batch) => {
      for (const event of batch.events) {
        seen.push({ kind: event.kind, name: event.location ? event.location.name : '',
          node: event.location ? event.location.node : '' });
        if (event.kind === 'KIND_SYNCED') {
          clearTimeout(timer);
          call.cancel();
          resolve(seen);
          return;
        }
      }
    });
    call.on('error', (err) => {
      if (err.code !== grpc.status.CANCELLED) { clearTimeout(timer); reject(err); }
    });
  });
}

async function main() {
  const [address = '127.0.0.1:7400', name = 'node-echo'] = process.argv.slice(2);
  const client = new Registry(address, grpc.credentials.createInsecure());
  const out = {};

  const registered = await withRetry(() => unary(client, 'Register',
    { spec: { name, kind: 'echo' } }, 10));
  out.registered_index = registered.index;

  try {
    await unary(client, 'Register', { spec: { name, kind: 'echo' } }, 10);
    out.second_register = 'accepted?!';
  } catch (err) {
    out.second_register = { code: grpc.status[err.code], reason: reasonOf(err) };
  }

  const reply = await withRetry(() => unary(client, 'Call',
    { name, payload: Buffer.from('hello from node') }, 10));
  out.call = { payload: reply.payload.toString(), node: reply.node, token: reply.token };

  const where = await withRetry(() => unary(client, 'WhereIs', { name }));
  out.whereis = where.location
    ? { node: where.location.node, address: where.location.address, token: where.location.token }
    : { waiting: true };

  out.watch = (await watchUntilSynced(client, name)).filter((e) => e.kind === 'KIND_PLACED');
  client.close();
  console.log(JSON.stringify(out));
}

main().catch((err) => {
  console.error(`error: ${err.message} (reason ${reasonOf(err) || '-'})`);
  process.exit(1);
});
