/**
 * `CLIENT TRACKING` (server-assisted client-side caching) through rwsplit.
 *
 * A server tracks the keys read by one connection and tells that connection when they change.
 * Through rwsplit a client's reads are spread over shared connections and replicas, so a
 * client that turns tracking on gets, per shard, a connection of its own to the shard's
 * primary (never pooled, closed when tracking goes off, on RESET or when the client leaves),
 * and from then on all its commands to that shard run there: its reads are tracked where they
 * run, its writes too (NOLOOP and the invalidation of its own writes work as directly), and
 * reads of a tracking client never go to replicas (an invalidation comes from the primary as
 * the key changes, so what the client caches is never older than the primary's data).
 *
 * Invalidations: the tracking connection redirects them (`REDIRECT <id>`) to a second RESP3
 * connection of the client's own on the same primary, and rwsplit passes them on the way Redis
 * sends them: a RESP3 client gets the push `>2 invalidate <keys>`; with `REDIRECT <id>` (the
 * id of another rwsplit client, as `CLIENT ID` showed it) they go to that client, as a push
 * when it speaks RESP3, else as a message on `__redis__:invalidate` when it is subscribed
 * (RESP2's form); a RESP2 client without REDIRECT gets none, as from Redis. BCAST mode is
 * enabled on every shard's primary (a prefix's keys may live on any shard).
 *
 * A tracking connection lost (its node failed, a failover moved the primary) is replaced on
 * the shard's next command, and the client first gets an invalidation of everything (the
 * null form Redis sends on FLUSHALL): what the server tracked for it is gone.
 */
import type { NodeStatus } from '../../core/topology.js';
import type { RedisLink } from '../backend/backend-link.js';
import {
  arityError,
  internalError,
  lostLinkText,
  notIntegerError,
  syntaxError,
  unavailableError,
  usageError,
} from '../errors.js';
import {
  encodeArrayHeader,
  encodeBulk,
  encodeCommand,
  encodeInteger,
  encodeNull,
  encodeSimple,
} from '../resp/index.js';
import type { LinkProfile, ShardSet } from '../sharding/shards.js';

/** A client that invalidation messages may be sent to. */
export interface InvalidationTarget {
  readonly resp3: boolean;
  /** in pub/sub mode (RESP2 clients get redirected invalidations only then) */
  readonly subscribed: boolean;
  /** writes an out-of-band message to the client */
  push(bytes: Buffer): void;
}

export interface TrackingHost extends InvalidationTarget {
  readonly shards: ShardSet;
  readonly profile: LinkProfile;
  /** rwsplit's client with this id (REDIRECT), or null */
  client(id: number): InvalidationTarget | null;
}

interface Tracked {
  node: NodeStatus;
  link: RedisLink;
  sub: RedisLink;
}

const PUSH_HEAD = Buffer.from('>2\r\n$10\r\ninvalidate\r\n', 'latin1');
const MESSAGE_HEAD = Buffer.from('*3\r\n$7\r\nmessage\r\n$20\r\n__redis__:invalidate\r\n', 'latin1');
const RESP3_NULL = Buffer.from('_\r\n', 'latin1');
const CACHING = {
  yes: encodeCommand(['CLIENT', 'CACHING', 'yes']),
  no: encodeCommand(['CLIENT', 'CACHING', 'no']),
};

/** The options of one CLIENT TRACKING call, as Redis parses them. */
interface Request {
  on: boolean;
  redirect: number;
  bcast: boolean;
  optin: boolean;
  optout: boolean;
  noloop: boolean;
  prefixes: Buffer[];
}

export class SessionTracking {
  on = false;
  private bcast = false;
  private optin = false;
  private optout = false;
  private noloop = false;
  private prefixes: Buffer[] = [];
  private redirect = 0;
  private brokenRedirect = false;
  /** CLIENT CACHING given, for the next command (`armed` while that command is dispatched) */
  private pendingCaching: 'yes' | 'no' | null = null;
  private armed: 'yes' | 'no' | null = null;
  /** per shard: its tracking connection (and its invalidation connection) */
  private readonly tracked = new Map<number, Promise<Tracked>>();
  private readonly ready = new Map<number, Tracked>();
  private closed = false;

  constructor(private readonly host: TrackingHost) {}

  /** `CLIENT TRACKING on|off …`: the reply, at once or once every shard answered. */
  command(args: Buffer[]): Buffer | Promise<Buffer> {
    if (args.length < 3) return arityError('client|tracking');
    const req = this.parse(args);
    if (Buffer.isBuffer(req)) return req;
    if (!req.on) {
      this.stop();
      return encodeSimple('OK');
    }
    if (this.on && this.bcast !== req.bcast) {
      // Said here: a shard opened later would not know the old mode.
      return usageError(
        "You can't switch BCAST mode on/off before disabling tracking for this client, and then re-enabling it with a different mode.",
      );
    }
    const opts = optionArgs(req);
    const shards = this.host.shards.shards.map((_, i) => i);
    return Promise.all(
      shards.map((shard) =>
        this.connection(shard).then(
          (t) => this.enable(t, opts),
          (err: Error) => unavailableError(err.message),
        ),
      ),
    ).then((replies) => {
      const refused = replies.find((r) => r[0] === 0x2d || r[0] === 0x21);
      if (refused) {
        if (!this.on) this.stop(); // the connections opened for it are not needed
        return refused;
      }
      this.on = true;
      this.bcast = req.bcast;
      this.optin = req.optin;
      this.optout = req.optout;
      this.noloop = req.noloop;
      this.prefixes.push(...req.prefixes);
      this.redirect = req.redirect;
      this.brokenRedirect = false;
      return encodeSimple('OK');
    });
  }

  /** `CLIENT CACHING yes|no`, checked as Redis does; applied to the next command. */
  caching(args: Buffer[]): Buffer {
    if (args.length !== 3) return arityError('client|caching');
    if (!this.on)
      return usageError(
        'CLIENT CACHING can be called only when the client is in tracking mode with OPTIN or OPTOUT mode enabled',
      );
    const opt = args[2]!.toString().toLowerCase();
    if (opt === 'yes') {
      if (!this.optin)
        return usageError('CLIENT CACHING YES is only valid when tracking is enabled in OPTIN mode.');
    } else if (opt === 'no') {
      if (!this.optout)
        return usageError('CLIENT CACHING NO is only valid when tracking is enabled in OPTOUT mode.');
    } else return syntaxError();
    this.pendingCaching = opt;
    return encodeSimple('OK');
  }

  /**
   * Called as each command is dispatched: a CLIENT CACHING before it applies to it only (CLIENT
   * subcommands leave it for the next command, as Redis does).
   */
  beginCommand(isClient: boolean): void {
    this.armed = isClient ? null : this.pendingCaching;
    if (!isClient) this.pendingCaching = null;
  }

  endCommand(): void {
    this.armed = null;
  }

  /**
   * The connection `node`'s commands of this client take while tracking is on: the shard's
   * tracking connection (opened again if it was lost or the primary changed); null when
   * tracking is off or `node` is not a shard's primary.
   */
  linkTo(node: NodeStatus): RedisLink | Promise<RedisLink> | null {
    if (!this.on) return null;
    const shard = this.host.shards.shards.findIndex((s) => s.topology.primary() === node);
    if (shard < 0) return null;
    const caching = this.armed;
    const use = (link: RedisLink): RedisLink => {
      if (caching) link.send(CACHING[caching], () => undefined);
      return link;
    };
    const t = this.ready.get(shard);
    if (t && t.node === node && !t.link.closed) return use(t.link);
    if (t) this.lost(shard, t); // a failover moved the primary
    return this.connection(shard)
      .then(async (c) => {
        const r = await this.enable(c, this.currentOptions());
        if (r[0] === 0x2d || r[0] === 0x21) throw new Error(r.toString().slice(1).trim());
        return c.link;
      })
      .then(use);
  }

  private currentOptions(): Buffer[] {
    return optionArgs({
      bcast: this.bcast,
      optin: this.optin,
      optout: this.optout,
      noloop: this.noloop,
      prefixes: this.prefixes,
    });
  }

  /** `CLIENT TRACKINGINFO`, as Redis answers it. */
  info(resp3: boolean): Buffer {
    const flags = [this.on ? 'on' : 'off'];
    if (this.bcast) flags.push('bcast');
    if (this.optin) flags.push('optin');
    if (this.optin && this.pendingCaching === 'yes') flags.push('caching-yes');
    if (this.optout) flags.push('optout');
    if (this.optout && this.pendingCaching === 'no') flags.push('caching-no');
    if (this.noloop) flags.push('noloop');
    if (this.brokenRedirect) flags.push('broken_redirect');
    const header = (kind: string, n: number): Buffer => Buffer.from(`${kind}${n}\r\n`, 'latin1');
    return Buffer.concat([
      resp3 ? header('%', 3) : encodeArrayHeader(6),
      encodeBulk('flags'),
      resp3 ? header('~', flags.length) : encodeArrayHeader(flags.length),
      ...flags.map((f) => encodeBulk(f)),
      encodeBulk('redirect'),
      encodeInteger(this.on ? this.redirect : -1),
      encodeBulk('prefixes'),
      encodeArrayHeader(this.prefixes.length),
      ...this.prefixes.map((p) => encodeBulk(p)),
    ]);
  }

  /** `CLIENT GETREDIR`: -1 when off, 0 without redirection. */
  getredir(): number {
    return this.on ? this.redirect : -1;
  }

  /** Tracking off (CLIENT TRACKING OFF, RESET): its connections are closed. */
  stop(): void {
    this.on = false;
    this.bcast = this.optin = this.optout = this.noloop = this.brokenRedirect = false;
    this.prefixes = [];
    this.redirect = 0;
    this.pendingCaching = this.armed = null;
    const all = [...this.tracked.values()];
    this.tracked.clear();
    this.ready.clear();
    for (const p of all)
      p.then(
        (t) => {
          t.link.destroy('tracking off');
          t.sub.destroy('tracking off');
        },
        () => undefined,
      );
  }

  /** The client left. */
  close(): void {
    this.closed = true;
    this.stop();
  }

  // ---- connections --------------------------------------------------------------------------

  private connection(shard: number): Promise<Tracked> {
    let p = this.tracked.get(shard);
    if (p) return p;
    p = this.open(shard);
    this.tracked.set(shard, p);
    p.then(
      (t) => {
        if (this.tracked.get(shard) === p) this.ready.set(shard, t);
      },
      () => {
        if (this.tracked.get(shard) === p) this.tracked.delete(shard);
      },
    );
    return p;
  }

  private async open(shard: number): Promise<Tracked> {
    const s = this.host.shards.shards[shard]!;
    const node = s.topology.primary();
    if (!node) throw new Error(`cannot track keys now: the primary of shard ${s.name} is unavailable`);
    const profile = this.host.profile;
    const [link, sub] = await Promise.allSettled([
      this.host.shards.exclusive(node, profile),
      // RESP3, so the redirected invalidations arrive as pushes without a subscription.
      this.host.shards.exclusive(node, { ...profile, resp3: true }),
    ]);
    if (link.status === 'rejected' || sub.status === 'rejected' || this.closed) {
      if (link.status === 'fulfilled') link.value.destroy('not needed');
      if (sub.status === 'fulfilled') sub.value.destroy('not needed');
      if (link.status === 'rejected') throw link.reason;
      if (sub.status === 'rejected') throw sub.reason;
      throw new Error('client left');
    }
    const t: Tracked = { node, link: link.value, sub: sub.value };
    await t.sub.serverId();
    t.sub.listener = (raw, info) => {
      if (info.isPush) this.invalidated(raw);
    };
    const onLost = (): void => this.lost(shard, t);
    t.link.onClose = onLost;
    t.sub.onClose = onLost;
    return t;
  }

  /** `CLIENT TRACKING ON` on one shard's connection, redirected to its invalidation connection. */
  private async enable(t: Tracked, opts: Buffer[]): Promise<Buffer> {
    const subId = await t.sub.serverId();
    if (subId === null)
      return internalError('cannot track keys now: the server did not give a connection id');
    const cmd = encodeCommand([
      Buffer.from('CLIENT'),
      Buffer.from('TRACKING'),
      Buffer.from('ON'),
      Buffer.from('REDIRECT'),
      Buffer.from(String(subId)),
      ...opts,
    ]);
    return new Promise((resolve) =>
      t.link.send(cmd, (r) => resolve(r ?? unavailableError(lostLinkText(t.node.spec.id)))),
    );
  }

  /** A shard's tracking connections are gone: everything the client cached may be stale. */
  private lost(shard: number, t: Tracked): void {
    if (this.ready.get(shard) !== t) return;
    this.ready.delete(shard);
    this.tracked.delete(shard);
    t.link.onClose = null;
    t.sub.onClose = null;
    t.link.destroy('tracking connection replaced');
    t.sub.destroy('tracking connection replaced');
    if (this.on && !this.closed) this.deliver(null);
  }

  private invalidated(raw: Buffer): void {
    if (!raw.subarray(0, PUSH_HEAD.length).equals(PUSH_HEAD)) return; // not an invalidation
    const keys = raw.subarray(PUSH_HEAD.length);
    this.deliver(keys.equals(RESP3_NULL) ? null : keys);
  }

  /**
   * Sends one invalidation (`keys`: the array of keys as the server encoded it; null:
   * everything) where Redis would: this client or the REDIRECT target.
   */
  private deliver(keys: Buffer | null): void {
    if (!this.on || this.closed) return;
    // The null form is the tracking client's protocol's, as Redis writes it.
    const body = keys ?? encodeNull(this.host.resp3);
    const target = this.redirect === 0 ? this.host : this.host.client(this.redirect);
    if (!target) {
      this.brokenRedirect = true;
      if (this.host.resp3)
        this.host.push(
          Buffer.concat([
            Buffer.from('>2\r\n', 'latin1'),
            encodeBulk('tracking-redir-broken'),
            encodeInteger(this.redirect),
          ]),
        );
      return;
    }
    if (target.resp3) target.push(Buffer.concat([PUSH_HEAD, body]));
    else if (this.redirect !== 0 && target.subscribed) target.push(Buffer.concat([MESSAGE_HEAD, body]));
    // A RESP2 client without REDIRECT: Redis has no way to tell it either.
  }

  /** Parses CLIENT TRACKING's arguments with Redis's checks and errors (REDIRECT names a client of rwsplit). */
  private parse(args: Buffer[]): Request | Buffer {
    const req: Request = {
      on: false,
      redirect: 0,
      bcast: false,
      optin: false,
      optout: false,
      noloop: false,
      prefixes: [],
    };
    for (let j = 3; j < args.length; j++) {
      const opt = args[j]!.toString().toLowerCase();
      const more = args.length - 1 - j;
      if (opt === 'redirect' && more > 0) {
        j++;
        if (req.redirect !== 0) return usageError('A client can only redirect to a single other client');
        const text = args[j]!.toString();
        const id = Number(text);
        if (!/^-?\d+$/.test(text) || !Number.isSafeInteger(id)) return notIntegerError();
        if (this.host.client(id) === null)
          return usageError('The client ID you want redirect to does not exist');
        req.redirect = id;
      } else if (opt === 'bcast') req.bcast = true;
      else if (opt === 'optin') req.optin = true;
      else if (opt === 'optout') req.optout = true;
      else if (opt === 'noloop') req.noloop = true;
      else if (opt === 'prefix' && more > 0) req.prefixes.push(args[++j]!);
      else return syntaxError();
    }
    const mode = args[2]!.toString().toLowerCase();
    if (mode !== 'on' && mode !== 'off') return syntaxError();
    req.on = mode === 'on';
    return req;
  }
}

/** CLIENT TRACKING's options other than REDIRECT (rwsplit sets that one), to send to a server. */
function optionArgs(o: {
  bcast: boolean;
  optin: boolean;
  optout: boolean;
  noloop: boolean;
  prefixes: Buffer[];
}): Buffer[] {
  const out: Buffer[] = [];
  if (o.bcast) out.push(Buffer.from('BCAST'));
  for (const p of o.prefixes) out.push(Buffer.from('PREFIX'), p);
  if (o.optin) out.push(Buffer.from('OPTIN'));
  if (o.optout) out.push(Buffer.from('OPTOUT'));
  if (o.noloop) out.push(Buffer.from('NOLOOP'));
  return out;
}
