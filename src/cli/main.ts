/**
 * The `rwsplit` command line: `demo`, `start --config FILE`, `restart`, `status`, `events`,
 * `switchover`.
 * Exit codes: 0 done, 1 runtime failure, 2 bad configuration or usage.
 */
import { Command, CommanderError, InvalidArgumentError } from 'commander';
import { ConfigError, loadConfigFile } from '../config/load.js';
import { Rwsplit } from '../app.js';
import { pgShardsOption, runDemo, type DemoOptions } from './demo.js';
import { ringMovementReport } from './ring.js';
import { printEvents, sinceOption } from './events.js';
import { printStatus } from './status.js';
import { runSwitchoverCommand, type SwitchoverCliOptions } from './switchover.js';
import { waitForSignal } from './signals.js';
import { runRestartCommand, type RestartCliOptions } from './restart.js';
import { inheritedListeners, reportReady } from '../admin/handover.js';

function portOption(value: string): number {
  const n = Number(value);
  if (!Number.isInteger(n) || n < 1 || n > 65535)
    throw new InvalidArgumentError('expected a port number 1-65535');
  return n;
}

function countOption(value: string): number {
  const n = Number(value);
  if (!Number.isInteger(n) || n < 0 || n > 16) throw new InvalidArgumentError('expected a number 0-16');
  return n;
}

/** `--workers`: a count of data-plane processes, or `auto` (the cores, capped). */
function workersOption(value: string): number | 'auto' {
  if (value === 'auto') return 'auto';
  const n = Number(value);
  if (!Number.isInteger(n) || n < 1 || n > 64)
    throw new InvalidArgumentError('expected auto or a number 1-64');
  return n;
}

export async function main(argv: string[]): Promise<void> {
  const program = new Command()
    .name('rwsplit')
    .description('Read/write-splitting proxy for PostgreSQL')
    .exitOverride()
    .showHelpAfterError();

  program
    .command('demo')
    .description(
      'start a local PostgreSQL primary + replicas, Redis shards, the proxies and the admin server',
    )
    .option('--dir <dir>', 'directory for the cluster', '.rwsplit/demo')
    .option('--replicas <n>', 'number of replicas', countOption, 2)
    .option('--pg-port <port>', 'port of the PostgreSQL proxy', portOption, 6432)
    .option('--http-port <port>', 'port of the admin HTTP server', portOption, 8432)
    .option('--redis-port <port>', 'port of the Redis proxy', portOption, 6479)
    .option('--redis-shards <n>', 'number of Redis shards (0: no Redis)', countOption, 2)
    .option('--pg-shards <n>', 'number of PostgreSQL shards, each a primary + replicas', pgShardsOption, 1)
    .option(
      '--workers <n>',
      'data-plane processes: a number, or auto (the cores, at most 8); default auto',
      workersOption,
    )
    .action(async (opts: DemoOptions) => {
      await runDemo(opts);
    });

  program
    .command('start')
    .description('run the proxy against an existing cluster')
    .requiredOption('--config <file>', 'YAML configuration file (see docs/CONFIG.md)')
    .option(
      '--workers <n>',
      'data-plane processes, overriding the config key workers: a number, or auto (the cores, at most 8)',
      workersOption,
    )
    .action(async (opts: { config: string; workers?: number | 'auto' }) => {
      const config = loadConfigFile(opts.config);
      if (opts.workers !== undefined) config.workers = opts.workers;
      // Started by a graceful restart: the old process hands its listening sockets over.
      const handed = inheritedListeners();
      const app = await Rwsplit.start(config, {
        configPath: opts.config,
        // A reload re-reads the file: --workers keeps overriding it.
        ...(opts.workers !== undefined ? { workers: opts.workers } : {}),
        ...(handed ? { listeners: await handed } : {}),
      });
      if (handed) reportReady(app.clientAdopters);
      const onRestartSignal = (): void => {
        app.restart().catch((err: Error) => app.log.error({ err: err.message }, 'SIGUSR2: no restart'));
      };
      process.on('SIGUSR2', onRestartSignal);
      const ended = await Promise.race([waitForSignal(), app.retired.then(() => 'handed over' as const)]);
      process.off('SIGUSR2', onRestartSignal);
      if (ended !== 'handed over') await app.stop();
      // Handed over: every client is gone and everything stopped; leave now rather than wait
      // for the last server connection's close to be acknowledged.
      else process.exit(0);
    });

  program
    .command('restart')
    .description(
      'graceful restart of a running `rwsplit start`: a new process takes over its sockets, no client is refused',
    )
    .option('--http <url>', 'admin URL of the running instance', 'http://127.0.0.1:8432')
    .option('--token <token>', 'admin.token (default: $RWSPLIT_ADMIN_TOKEN)')
    .action(async (opts: RestartCliOptions) => {
      await runRestartCommand(opts);
    });

  program
    .command('ring')
    .description('report which fraction of Redis keys a shard change would move')
    .requiredOption('--config <file>', 'YAML configuration file with a redis section')
    .option('--add <name[:weight]>', 'a shard to add')
    .option('--remove <name>', 'a shard to remove')
    .option('--keys <n>', 'keys to sample', (v) => Number(v), 100_000)
    .action((opts: { config: string; add?: string; remove?: string; keys: number }) => {
      console.log(ringMovementReport(opts));
    });

  program
    .command('status')
    .description('print the node table of a running rwsplit')
    .option('--http <url>', 'admin URL of the running instance', 'http://127.0.0.1:8432')
    .action(async (opts: { http: string }) => {
      await printStatus(opts.http);
    });

  program
    .command('events')
    .description('print the recent event log of a running rwsplit (node down/up, lag, drains, reloads)')
    .option('--http <url>', 'admin URL of the running instance', 'http://127.0.0.1:8432')
    .option(
      '--since <when>',
      'only events after this: epoch milliseconds, or a duration ago (90s, 5m, 2h)',
      (v: string) => sinceOption(v),
    )
    .action(async (opts: { http: string; since?: number }) => {
      await printEvents(opts.http, opts.since);
    });

  program
    .command('switchover')
    .description('planned switchover: promote a replica of a PostgreSQL shard, with no client errors')
    .option('--to <id>', 'the replica to promote (default: the most advanced)')
    .option('--shard <name>', 'the PostgreSQL shard', 'default')
    .option('--http <url>', 'admin URL of the running instance', 'http://127.0.0.1:8432')
    .option('--token <token>', 'admin.token (default: $RWSPLIT_ADMIN_TOKEN)')
    .action(async (opts: SwitchoverCliOptions) => {
      await runSwitchoverCommand(opts);
    });

  try {
    await program.parseAsync(argv);
  } catch (err) {
    if (err instanceof CommanderError) {
      process.exitCode = err.exitCode === 0 ? 0 : 2;
      return;
    }
    if (err instanceof ConfigError) {
      console.error(`rwsplit: ${err.message}`);
      process.exitCode = 2;
      return;
    }
    throw err;
  }
}
