import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { parseReplicationInfo, replicationInfoFromReply, ReplicationInfoError } from './replication-info.js';
import { encodeBulk, encodeError } from '../resp/index.js';

// Captured from redis-server 7.0.15 (a primary with two replicas, and one of the replicas).
const PRIMARY = [
  '# Replication',
  'role:master',
  'connected_slaves:2',
  'slave0:ip=127.0.0.1,port=17002,state=online,offset=1234,lag=0',
  'slave1:ip=127.0.0.1,port=17003,state=online,offset=1234,lag=1',
  'master_failover_state:no-failover',
  'master_replid:786463aea874085c2003b53e792f3205a815c81d',
  'master_replid2:0000000000000000000000000000000000000000',
  'master_repl_offset:1234',
  'second_repl_offset:-1',
  'repl_backlog_active:1',
  '',
].join('\r\n');

const REPLICA = [
  '# Replication',
  'role:slave',
  'master_host:127.0.0.1',
  'master_port:17001',
  'master_link_status:up',
  'master_last_io_seconds_ago:0',
  'master_sync_in_progress:0',
  'slave_read_repl_offset:1300',
  'slave_repl_offset:1290',
  'slave_priority:100',
  'connected_slaves:0',
  'master_replid:21bc7641dfab546e88513bfbc01e5f198703f614',
  'master_replid2:786463aea874085c2003b53e792f3205a815c81d',
  'master_repl_offset:1290',
  'second_repl_offset:1001',
  '',
].join('\r\n');

describe('INFO replication', () => {
  test('a primary: role, history, offset, replicas', () => {
    const info = parseReplicationInfo(PRIMARY);
    assert.deepEqual(info, {
      role: 'master',
      replid: '786463aea874085c2003b53e792f3205a815c81d',
      replid2: '0000000000000000000000000000000000000000',
      secondOffset: -1,
      offset: 1234,
      linkUp: true,
      masterHost: null,
      masterPort: null,
      connectedReplicas: 2,
    });
  });

  test('a replica: the applied offset (slave_repl_offset), not the read one, and its primary', () => {
    const info = parseReplicationInfo(REPLICA);
    assert.equal(info.role, 'slave');
    assert.equal(info.offset, 1290);
    assert.equal(info.linkUp, true);
    assert.equal(info.masterHost, '127.0.0.1');
    assert.equal(info.masterPort, 17001);
    assert.equal(info.replid2, '786463aea874085c2003b53e792f3205a815c81d');
    assert.equal(info.secondOffset, 1001);
  });

  test('a replica whose link is down is reported so', () => {
    const info = parseReplicationInfo(REPLICA.replace('master_link_status:up', 'master_link_status:down'));
    assert.equal(info.linkUp, false);
  });

  test('from a RESP2 bulk string and a RESP3 verbatim string', () => {
    assert.equal(replicationInfoFromReply(encodeBulk(PRIMARY)).offset, 1234);
    const body = `txt:${REPLICA}`;
    const verbatim = Buffer.from(`=${Buffer.byteLength(body)}\r\n${body}\r\n`);
    assert.equal(replicationInfoFromReply(verbatim).offset, 1290);
  });

  test('an error reply or another text is a ReplicationInfoError', () => {
    assert.throws(
      () => replicationInfoFromReply(encodeError('LOADING Redis is loading', 'LOADING')),
      ReplicationInfoError,
    );
    assert.throws(
      () => parseReplicationInfo('# Server\r\nredis_version:7.0.15\r\n'),
      /unexpected INFO replication/,
    );
  });
});
