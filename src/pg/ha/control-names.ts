/**
 * application_name of rwsplit's own control connections. Fencing an old primary terminates
 * every other backend but spares these, so the monitor keeps seeing the node and the failover
 * keeps its own session.
 */

/** The monitor's probes. */
export const MONITOR_APPLICATION_NAME = 'rwsplit-monitor';

/** The failover's and switchover's short-lived SQL connections. */
export const FAILOVER_APPLICATION_NAME = 'rwsplit-failover';
