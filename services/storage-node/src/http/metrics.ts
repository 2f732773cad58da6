import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client';

/** Prometheus metrics of one node. Route labels are route patterns, never raw paths (bounded cardinality). */
export class NodeMetrics {
  readonly registry = new Registry();
  readonly requests: Histogram<'method' | 'route' | 'status'>;
  readonly parserRefusals: Counter<'status'>;
  readonly bytesIn: Counter;
  readonly bytesOut: Counter;
  readonly uploads: Counter<'outcome'>;
  readonly members: Gauge<'state'>;
  readonly files: Gauge;
  readonly fileBytes: Gauge;
  readonly underReplicated: Gauge;
  readonly repairPendingBytes: Gauge;
  readonly repairBytes: Counter;
  readonly copiesMade: Counter;
  readonly surplusDropped: Counter;
  readonly corruptFound: Counter;
  readonly diskFree: Gauge;
  readonly startupUnexplained: Gauge<'kind'>;
  readonly quarantined: Gauge;
  private readonly last = { repairBytes: 0, copiesMade: 0, surplusDropped: 0, corruptFound: 0 };

  constructor(nodeId: string) {
    this.registry.setDefaultLabels({ node: nodeId });
    collectDefaultMetrics({ register: this.registry, prefix: 'shoal_' });
    this.requests = new Histogram({
      name: 'shoal_http_request_duration_seconds',
      help: 'HTTP requests by route pattern, method and status',
      labelNames: ['method', 'route', 'status'],
      buckets: [0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1, 5, 30, 120],
      registers: [this.registry],
    });
    // Requests Node's HTTP parser refuses never reach express, so the histogram above misses them.
    this.parserRefusals = new Counter({
      name: 'shoal_http_parser_refusals_total',
      help: 'Requests refused by the HTTP parser before routing (headers too large, malformed, too slow), by status',
      labelNames: ['status'],
      registers: [this.registry],
    });
    this.bytesIn = new Counter({
      name: 'shoal_bytes_in_total',
      help: 'File bytes received from clients',
      registers: [this.registry],
    });
    this.bytesOut = new Counter({
      name: 'shoal_bytes_out_total',
      help: 'File bytes sent to clients',
      registers: [this.registry],
    });
    this.uploads = new Counter({
      name: 'shoal_uploads_total',
      help: 'Uploads by outcome',
      labelNames: ['outcome'],
      registers: [this.registry],
    });
    this.startupUnexplained = new Gauge({
      name: 'shoal_startup_unexplained',
      help: 'What the start-up check could not explain: blobs without a live row (set aside in quarantine/), live rows without their blob (forgotten, repaired from peers)',
      labelNames: ['kind'],
      registers: [this.registry],
    });
    this.quarantined = new Gauge({
      name: 'shoal_quarantined_blobs',
      help: 'Blobs set aside in quarantine/ (damaged, or unexplained at start), kept until adopted or expired',
      registers: [this.registry],
    });
    this.members = new Gauge({
      name: 'shoal_members',
      help: 'Cluster members by state, as this node sees them',
      labelNames: ['state'],
      registers: [this.registry],
    });
    this.files = new Gauge({
      name: 'shoal_local_files',
      help: 'Live files this node holds a copy of',
      registers: [this.registry],
    });
    this.underReplicated = new Gauge({
      name: 'shoal_files_under_replicated',
      help: 'Files with fewer than N copies on live nodes, in the partitions this node leads',
      registers: [this.registry],
    });
    this.repairPendingBytes = new Gauge({
      name: 'shoal_repair_pending_bytes',
      help: 'Bytes of missing copies found by the last repair round and not made yet',
      registers: [this.registry],
    });
    this.repairBytes = new Counter({
      name: 'shoal_repair_bytes_total',
      help: 'Bytes this node received as repair or rebalance copies',
      registers: [this.registry],
    });
    this.copiesMade = new Counter({
      name: 'shoal_repair_copies_total',
      help: 'Copies made by repair and rebalance in partitions this node leads',
      registers: [this.registry],
    });
    this.surplusDropped = new Counter({
      name: 'shoal_surplus_copies_dropped_total',
      help: 'Copies dropped by nodes that no longer own them, after the owners verified theirs',
      registers: [this.registry],
    });
    this.corruptFound = new Counter({
      name: 'shoal_corrupt_copies_total',
      help: 'Local copies that failed their sha256 check and were quarantined',
      registers: [this.registry],
    });
    this.diskFree = new Gauge({
      name: 'shoal_disk_free_bytes',
      help: 'Free bytes on the file system of the data dir',
      registers: [this.registry],
    });
    this.fileBytes = new Gauge({
      name: 'shoal_local_file_bytes',
      help: 'Bytes of live files this node holds',
      registers: [this.registry],
    });
  }

  /** Brings counters kept elsewhere (repair, scrub) up to date; called before each scrape. */
  syncCounters(now: {
    repairBytes: number;
    copiesMade: number;
    surplusDropped: number;
    corruptFound: number;
  }): void {
    for (const key of Object.keys(this.last) as Array<keyof typeof this.last>) {
      const delta = now[key] - this.last[key];
      if (delta > 0) this[key].inc(delta);
      this.last[key] = now[key];
    }
  }
}
