import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client';

/** Prometheus metrics of one node. Route labels are route patterns, never raw paths (bounded cardinality). */
export class NodeMetrics {
  readonly registry = new Registry();
  readonly requests: Histogram<'method' | 'route' | 'status'>;
  readonly bytesIn: Counter;
  readonly bytesOut: Counter;
  readonly uploads: Counter<'outcome'>;
  readonly members: Gauge<'state'>;
  readonly files: Gauge;
  readonly fileBytes: Gauge;

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
    this.fileBytes = new Gauge({
      name: 'shoal_local_file_bytes',
      help: 'Bytes of live files this node holds',
      registers: [this.registry],
    });
  }
}
