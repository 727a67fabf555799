import assert from 'node:assert/strict';
import { test } from 'node:test';
import { Metrics } from '../admin/metrics.js';
import { ClusterView } from '../core/cluster-view.js';
import {
  arityError,
  crossShardError,
  maxClientsError,
  noAuthError,
  notReplicatedError,
  REDIS_ERROR_KINDS,
  redisError,
  redisErrorCounts,
  type RedisErrorKind,
} from './errors.js';

test('each kind sends its prefix, and texts that Redis writes stay as Redis writes them', () => {
  for (const kind of Object.keys(REDIS_ERROR_KINDS) as RedisErrorKind[]) {
    const reply = redisError(kind, 'why').toString();
    assert.equal(reply, `-${REDIS_ERROR_KINDS[kind]} why\r\n`, kind);
  }
  assert.equal(arityError('get').toString(), "-ERR wrong number of arguments for 'get' command\r\n");
  assert.equal(noAuthError().toString(), '-NOAUTH Authentication required.\r\n');
  assert.match(crossShardError('WATCH').toString(), /^-CROSSSLOT Keys in WATCH don't hash to the same shard/);
});

test('the errors that a setting governs name it', () => {
  assert.match(maxClientsError(10).toString(), /redis\.limits\.maxClients = 10/);
  assert.match(
    notReplicatedError('r1', { numReplicas: 2, timeoutMs: 50 }, '1 did').toString(),
    /^-ERR the write was not confirmed by 2 replica\(s\) within 50 ms \(redis\.waitReplicas; 1 did\); it may still exist on r1\r\n$/,
  );
});

test('errors made are counted by kind and prefix in rwsplit_redis_client_errors_total', async () => {
  const before = redisErrorCounts().crossShard;
  crossShardError('this transaction');
  crossShardError('WATCH');
  assert.equal(redisErrorCounts().crossShard, before + 2);
  const metrics = new Metrics(new ClusterView());
  metrics.redisStats();
  const text = await metrics.registry.metrics();
  assert.match(
    text,
    new RegExp(
      `rwsplit_redis_client_errors_total\\{kind="crossShard",prefix="CROSSSLOT"\\} ${before + 2}\\n`,
    ),
  );
});
