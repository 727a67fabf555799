import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { BackendCode, CLOSE_COMPLETE, PARSE_COMPLETE, readyForQuery } from '../protocol/index.js';
import { Expect, ResponseTracker, Verdict } from './response-tracker.js';

const frame = (code: number): Buffer => Buffer.from([code, 0, 0, 0, 4]);
const ERROR = frame(BackendCode.ErrorResponse);

function setup(): { tracker: ResponseTracker; emitted: Buffer[]; failed: (string | null)[] } {
  const emitted: Buffer[] = [];
  const failed: (string | null)[] = [];
  const tracker = new ResponseTracker({
    emit: (b) => emitted.push(b),
    parseFailed: (k) => failed.push(k),
    closeSkipped: (k) => failed.push(`close ${k}`),
  });
  return { tracker, emitted, failed };
}

describe('ResponseTracker', () => {
  test('swallows the answer to an injected Parse and forwards the rest', () => {
    const { tracker } = setup();
    tracker.expectParse('rws_a', true);
    tracker.expect(Expect.Bind);
    tracker.expect(Expect.Execute);
    tracker.expect(Expect.Sync);
    assert.equal(tracker.pendingReady, 1);
    assert.equal(tracker.onFrame(BackendCode.ParseComplete, PARSE_COMPLETE), Verdict.Swallow);
    assert.equal(tracker.onFrame(BackendCode.BindComplete, frame(BackendCode.BindComplete)), Verdict.Forward);
    assert.equal(tracker.onFrame(BackendCode.DataRow, frame(BackendCode.DataRow)), Verdict.Forward);
    assert.equal(
      tracker.onFrame(BackendCode.CommandComplete, frame(BackendCode.CommandComplete)),
      Verdict.Forward,
    );
    assert.equal(tracker.idle, false);
    assert.equal(tracker.onFrame(BackendCode.ReadyForQuery, readyForQuery(0x49)), Verdict.Forward);
    assert.equal(tracker.idle, true);
    assert.equal(tracker.pendingReady, 0);
  });

  test('emits a synthetic answer when it reaches the head of the queue, in order', () => {
    const { tracker, emitted } = setup();
    tracker.expect(Expect.Bind);
    tracker.synthesize(CLOSE_COMPLETE);
    assert.equal(emitted.length, 0, 'waits behind the Bind');
    tracker.expect(Expect.Sync);
    tracker.onFrame(BackendCode.BindComplete, frame(BackendCode.BindComplete));
    assert.deepEqual(emitted, [CLOSE_COMPLETE]);
    tracker.synthesize(PARSE_COMPLETE);
    assert.equal(emitted.length, 1, 'behind the Sync');
  });

  test('after an error in an extended batch, skips to Sync and undoes Parses that never ran', () => {
    const { tracker, emitted, failed } = setup();
    tracker.expect(Expect.Bind);
    tracker.expectParse('rws_b', false);
    tracker.synthesize(PARSE_COMPLETE);
    tracker.expect(Expect.Execute);
    tracker.expect(Expect.Sync);
    assert.equal(tracker.onFrame(BackendCode.ErrorResponse, ERROR), Verdict.Forward);
    assert.deepEqual(failed, ['rws_b']);
    assert.equal(
      emitted.length,
      0,
      'the synthetic ParseComplete after the error is dropped, as the server would',
    );
    assert.equal(tracker.onFrame(BackendCode.ReadyForQuery, readyForQuery(0x49)), Verdict.Forward);
    assert.equal(tracker.idle, true);
  });

  test('an injected Close is swallowed, and reported when an error made the server skip it', () => {
    const { tracker, failed } = setup();
    tracker.expectInjectedClose('rws_old', 0);
    tracker.expect(Expect.Sync);
    assert.equal(tracker.onFrame(BackendCode.CloseComplete, CLOSE_COMPLETE), Verdict.Swallow);
    tracker.onFrame(BackendCode.ReadyForQuery, readyForQuery(0x49));
    tracker.expect(Expect.Bind);
    tracker.expectInjectedClose('rws_older', 0);
    tracker.expect(Expect.Sync);
    tracker.onFrame(BackendCode.ErrorResponse, ERROR);
    assert.deepEqual(failed, ['close rws_older']);
  });

  test('an error inside a simple Query does not end it; ReadyForQuery does', () => {
    const { tracker } = setup();
    tracker.expect(Expect.Query);
    assert.equal(tracker.onFrame(BackendCode.ErrorResponse, ERROR), Verdict.Forward);
    assert.equal(tracker.idle, false);
    tracker.onFrame(BackendCode.ReadyForQuery, readyForQuery(0x49));
    assert.equal(tracker.idle, true);
  });

  test('an injected Query (deferred BEGIN) is swallowed up to its ReadyForQuery', () => {
    const { tracker } = setup();
    tracker.expect(Expect.InjectedQuery);
    tracker.expect(Expect.Query);
    assert.equal(
      tracker.onFrame(BackendCode.CommandComplete, frame(BackendCode.CommandComplete)),
      Verdict.Swallow,
    );
    assert.equal(tracker.onFrame(BackendCode.ReadyForQuery, readyForQuery(0x54)), Verdict.Swallow);
    assert.equal(
      tracker.onFrame(BackendCode.CommandComplete, frame(BackendCode.CommandComplete)),
      Verdict.Forward,
    );
    assert.equal(tracker.onFrame(BackendCode.ReadyForQuery, readyForQuery(0x54)), Verdict.Forward);
  });

  test('notices, notifications and parameter changes pass at any time', () => {
    const { tracker } = setup();
    tracker.expectParse('rws_c', true);
    for (const code of [
      BackendCode.NoticeResponse,
      BackendCode.NotificationResponse,
      BackendCode.ParameterStatus,
    ]) {
      assert.equal(tracker.onFrame(code, frame(code)), Verdict.Forward);
    }
    assert.equal(tracker.onFrame(BackendCode.ParseComplete, PARSE_COMPLETE), Verdict.Swallow);
  });

  test('Describe of a statement ends at RowDescription or NoData, after ParameterDescription', () => {
    const { tracker } = setup();
    tracker.expect(Expect.Describe);
    tracker.expect(Expect.Describe);
    assert.equal(
      tracker.onFrame(BackendCode.ParameterDescription, frame(BackendCode.ParameterDescription)),
      Verdict.Forward,
    );
    assert.equal(tracker.idle, false);
    tracker.onFrame(BackendCode.RowDescription, frame(BackendCode.RowDescription));
    tracker.onFrame(BackendCode.NoData, frame(BackendCode.NoData));
    assert.equal(tracker.idle, true);
  });
});

describe('ResponseTracker: COPY FROM STDIN', () => {
  const COPY_IN = frame(BackendCode.CopyInResponse);
  const COMPLETE = frame(BackendCode.CommandComplete);

  test('a Sync sent before CopyDone is ignored by the server: no ReadyForQuery is awaited for it', () => {
    const dropped: number[] = [];
    const tracker = new ResponseTracker({
      emit: () => undefined,
      parseFailed: () => undefined,
      closeSkipped: () => undefined,
      readyDropped: (n) => dropped.push(n),
    });
    tracker.expect(Expect.Execute);
    assert.equal(tracker.expect(Expect.Sync), true);
    tracker.onFrame(BackendCode.CopyInResponse, COPY_IN);
    assert.deepEqual(dropped, [1]);
    assert.equal(tracker.pendingReady, 0);
    assert.equal(tracker.expect(Expect.Sync), false, 'a Sync inside the COPY');
    tracker.expectCopyEnd();
    assert.equal(tracker.expect(Expect.Sync), true, 'the Sync after CopyDone counts');
    tracker.onFrame(BackendCode.CommandComplete, COMPLETE);
    assert.equal(tracker.onFrame(BackendCode.ReadyForQuery, readyForQuery(0x49)), Verdict.Forward);
    assert.equal(tracker.idle, true);
  });

  test('pipelined: the Syncs between Execute and CopyDone are dropped when the COPY starts, not the one after', () => {
    const { tracker } = setup();
    tracker.expect(Expect.Execute);
    tracker.expect(Expect.Sync);
    tracker.expectCopyEnd();
    tracker.expect(Expect.Sync);
    assert.equal(tracker.pendingReady, 2);
    tracker.onFrame(BackendCode.CopyInResponse, COPY_IN);
    assert.equal(tracker.pendingReady, 1);
    tracker.onFrame(BackendCode.CommandComplete, COMPLETE);
    tracker.onFrame(BackendCode.ReadyForQuery, readyForQuery(0x49));
    assert.equal(tracker.idle, true);
  });

  test('an error ends the COPY: the next Sync is answered', () => {
    const { tracker } = setup();
    tracker.expect(Expect.Execute);
    tracker.onFrame(BackendCode.CopyInResponse, COPY_IN);
    tracker.onFrame(BackendCode.ErrorResponse, ERROR);
    assert.equal(tracker.expect(Expect.Sync), true);
    assert.equal(tracker.idle, false);
    tracker.onFrame(BackendCode.ReadyForQuery, readyForQuery(0x49));
    assert.equal(tracker.idle, true);
  });

  test('a CopyDone or CopyFail outside a COPY leaves the tracker idle', () => {
    const { tracker } = setup();
    tracker.expectCopyEnd();
    assert.equal(tracker.idle, true);
  });
});
