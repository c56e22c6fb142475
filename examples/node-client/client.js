// A quorum-registry client in Node.js, from the .proto alone (@grpc/grpc-js +
// @grpc/proto-loader): register a name, call it, look it up, watch it.
//
//   npm ci && node client.js 127.0.0.1:7400 my-echo
//
// It prints one JSON line with what it saw. Errors are decided by their machine-readable
// reason (docs/protocol.md), never by their message: the reason travels in the
// google.rpc.Status details (the `grpc-status-details-bin` trailer), decoded here with
// protobufjs.
'use strict';

const path = require('path');
const grpc = require('@grpc/grpc-js');
const protoLoader = require('@grpc/proto-loader');
const protobuf = require('protobufjs');

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

// google.rpc.Status and ErrorInfo, the standard error details every refusal carries
// (docs/protocol.md); defined inline so that nothing but protos/ is needed.
const rpc = protobuf.Root.fromJSON({
  nested: {
    google: {
      nested: {
        protobuf: { nested: { Any: { fields: {
          type_url: { type: 'string', id: 1 }, value: { type: 'bytes', id: 2 } } } } },
        rpc: { nested: {
          Status: { fields: {
            code: { type: 'int32', id: 1 }, message: { type: 'string', id: 2 },
            details: { rule: 'repeated', type: 'google.protobuf.Any', id: 3 } } },
          ErrorInfo: { fields: {
            reason: { type: 'string', id: 1 }, domain: { type: 'string', id: 2 },
            metadata: { keyType: 'string', type: 'string', id: 3 } } },
        } },
      },
    },
  },
});
const Status = rpc.lookupType('google.rpc.Status');
const ErrorInfo = rpc.lookupType('google.rpc.ErrorInfo');

// The ErrorInfo of a failed call: { reason, metadata } (owner, leader, ...), or null.
function errorInfo(err) {
  const raw = err.metadata ? err.metadata.get('grpc-status-details-bin') : [];
  if (!raw.length) return null;
  for (const detail of Status.decode(raw[0]).details) {
    if (detail.type_url.endsWith('/google.rpc.ErrorInfo')) {
      const info = ErrorInfo.decode(detail.value);
      if (info.domain === 'registry.v1') return { reason: info.reason, metadata: info.metadata };
    }
  }
  return null;
}

function reasonOf(err) {
  const info = errorInfo(err);
  return info ? info.reason : '';
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
    const info = errorInfo(err);
    out.second_register = { code: grpc.status[err.code], reason: info ? info.reason : '',
      leader: info ? info.metadata.leader || '' : '' };
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
