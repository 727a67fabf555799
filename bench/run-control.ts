/**
 * What every benchmark script needs around its measurements: a LIFO list of things to stop,
 * Ctrl-C handling that stops them all, timestamped progress lines and the usage-error class.
 */

/** A bad command line: reported with the usage line, exit code 2. */
export class UsageError extends Error {
  readonly code = 'BENCH_USAGE';
}

/** LIFO list of things to stop; `stopAll` never throws. */
export class Cleanup {
  private readonly steps: { name: string; fn: () => Promise<void> }[] = [];

  add(name: string, fn: () => Promise<void>): void {
    this.steps.push({ name, fn });
  }

  async stopAll(): Promise<void> {
    while (this.steps.length > 0) {
      const step = this.steps.pop();
      if (step === undefined) break;
      try {
        await step.fn();
      } catch (err) {
        console.error(
          `bench: stopping ${step.name} failed: ${err instanceof Error ? err.message : String(err)}`,
        );
      }
    }
  }
}

/** First SIGINT/SIGTERM aborts the run (everything is then stopped); a second one exits at once. */
export function installSignalHandlers(abort: AbortController): void {
  const onSignal = (sig: NodeJS.Signals): void => {
    if (abort.signal.aborted) {
      console.error(`bench: second ${sig}, exiting now (children get SIGKILL)`);
      process.exit(130);
    }
    console.error(`bench: ${sig} received, stopping everything…`);
    abort.abort(new Error(`interrupted by ${sig}`));
  };
  process.on('SIGINT', onSignal);
  process.on('SIGTERM', onSignal);
}

/** A progress line with the wall-clock time. */
export function log(message: string): void {
  console.log(`[${new Date().toISOString().slice(11, 19)}] ${message}`);
}

/**
 * How a benchmark's `main()` failure ends the process: usage errors with the usage line and
 * exit 2, an interruption with 130, anything else with its stack and exit 1.
 */
export function reportFailure(err: unknown, abort: AbortController, usage: string): void {
  if (err instanceof UsageError) {
    console.error(`bench: ${err.message}\n${usage}`);
    process.exitCode = 2;
    return;
  }
  if (abort.signal.aborted) {
    console.error('bench: interrupted; everything it started is stopped, no results written');
    process.exitCode = 130;
    return;
  }
  console.error(`bench: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}`);
  process.exitCode = 1;
}
