import { silentLogger } from '../../shared/logging';
import type { GossipMessage, MemberDigest } from '../../shared/protocol';
import { Discovery } from '../../services/storage-node/src/membership/discovery';
import {
  MAX_INCARNATION_LEAD_MS,
  SwimDetector,
  type Clock,
  type SwimTransport,
} from '../../services/storage-node/src/membership/swim';

/**
 * The failure detector alone, in milliseconds: a fake clock that moves only when told, and an
 * in-memory network that hands each message straight to the detector behind a URL, where a node
 * can be down and a link between two nodes can be cut (a failure, as a timeout would be).
 */
const GOSSIP_MS = 100;
const FAILURE_MS = 1_000;

class FakeClock implements Clock {
  t = 1_000_000;
  now(): number {
    return this.t;
  }
}

interface Call {
  from: string;
  kind: 'exchange' | 'probeVia';
  to: string;
  target?: string;
}

class FakeNetwork {
  readonly byUrl = new Map<string, SwimDetector>();
  readonly down = new Set<string>();
  private readonly cuts = new Set<string>();
  calls: Call[] = [];

  cut(a: string, b: string): void {
    this.cuts.add(`${a}|${b}`).add(`${b}|${a}`);
  }

  heal(): void {
    this.cuts.clear();
  }

  transportFor(from: string): SwimTransport {
    return {
      exchange: async (url: string, message: GossipMessage) => {
        this.calls.push({ from, kind: 'exchange', to: url });
        return this.reach(from, url).receive(message);
      },
      probeVia: async (helperUrl: string, targetUrl: string) => {
        this.calls.push({ from, kind: 'probeVia', to: helperUrl, target: targetUrl });
        return this.reach(from, helperUrl).probeFor(targetUrl);
      },
    };
  }

  private reach(from: string, to: string): SwimDetector {
    const node = this.byUrl.get(to);
    if (!node || this.down.has(to) || this.cuts.has(`${from}|${to}`)) throw new Error(`${to} unreachable`);
    return node;
  }
}

const url = (id: string): string => `http://${id}`;

/** Identity shuffles and dice that never come up: rounds do exactly the scheduled probe. */
const neverRoll = (): number => 0.99;
/** Dice that always come up: every round also probes a dead member and a seed, if there are any. */
const alwaysRoll = (): number => 0;

/** A small deterministic generator (mulberry32), for runs that need real-looking shuffles. */
function seeded(seed: number): () => number {
  let a = seed;
  return () => {
    a = (a + 0x6d2b79f5) | 0;
    let t = Math.imul(a ^ (a >>> 15), 1 | a);
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

interface NodeOptions {
  seeds?: string[];
  random?: () => number;
  /** Another URL that reaches this same node (a Service address). */
  alias?: string;
}

function harness(defaultRandom: () => number = neverRoll) {
  const clock = new FakeClock();
  const net = new FakeNetwork();
  const changes = new Map<string, number>();
  const node = (id: string, o: NodeOptions = {}): SwimDetector => {
    const discovery = new Discovery(
      { selfUrl: url(id), seeds: o.seeds ?? [], dnsName: undefined, port: 7000, relookupMs: 5_000 },
      silentLogger(),
      undefined,
      clock,
    );
    const swim = new SwimDetector(
      {
        selfId: id,
        selfUrl: url(id),
        incarnation: 1_000,
        gossipIntervalMs: GOSSIP_MS,
        failureTimeoutMs: FAILURE_MS,
      },
      {
        transport: net.transportFor(url(id)),
        seeds: discovery,
        log: silentLogger(),
        clock,
        random: o.random ?? defaultRandom,
        onChange: () => changes.set(id, (changes.get(id) ?? 0) + 1),
      },
    );
    net.byUrl.set(url(id), swim);
    if (o.alias) net.byUrl.set(o.alias, swim);
    return swim;
  };
  /** Every node hears every other's list once: they all know each other, alive. */
  const introduce = (...nodes: SwimDetector[]): void => {
    for (const x of nodes) for (const y of nodes) if (x !== y) x.receive(y.digest());
  };
  /** One protocol period on every node given, one after the other, then the clock moves on. */
  const period = async (...nodes: SwimDetector[]): Promise<void> => {
    for (const n of nodes) await n.round();
    clock.t += GOSSIP_MS;
  };
  return { clock, net, changes, node, introduce, period };
}

const stateOf = (swim: SwimDetector, id: string): string | undefined => swim.member(id)?.state;

const claim = (id: string, incarnation: number, state: MemberDigest['state']): MemberDigest => ({
  id,
  url: url(id),
  incarnation,
  state,
});

describe('probing', () => {
  it('keeps a member that answers the direct probe alive, and asks nobody else', async () => {
    const { clock, net, node, introduce } = harness();
    const [a, b, c] = [node('a'), node('b'), node('c')];
    introduce(a, b, c);
    clock.t += 500;

    await a.round();

    expect(net.calls).toEqual([{ from: url('a'), kind: 'exchange', to: url('b') }]);
    expect(stateOf(a, 'b')).toBe('alive');
    expect(a.member('b')!.lastContact).toBe(clock.t);
    expect(b.member('a')!.lastContact).toBe(clock.t);
  });

  it('probes members in turn, each once per cycle', async () => {
    const { net, node, introduce } = harness(seeded(7));
    const nodes = ['a', 'b', 'c', 'd', 'e'].map((id) => node(id));
    introduce(...nodes);
    for (let i = 0; i < 8; i++) await nodes[0]!.round();
    const probed = net.calls.filter((c) => c.from === url('a')).map((c) => c.to);
    expect(new Set(probed.slice(0, 4))).toEqual(new Set(['b', 'c', 'd', 'e'].map(url)));
    expect(new Set(probed.slice(4, 8))).toEqual(new Set(['b', 'c', 'd', 'e'].map(url)));
  });

  it('saves a member that one link cannot reach by asking another member to probe it', async () => {
    const { net, node, introduce, period } = harness();
    const [a, b, c] = [node('a'), node('b'), node('c')];
    introduce(a, b, c);
    net.cut(url('a'), url('b'));

    await period(a); // probes b: the direct probe fails, c reaches it for a
    await period(a); // probes c

    expect(net.calls).toContainEqual({ from: url('a'), kind: 'probeVia', to: url('c'), target: url('b') });
    expect(stateOf(a, 'b')).toBe('alive');
    expect(a.member('b')!.lastContact).toBeGreaterThan(0);
  });

  it('suspects a member that neither it nor its helpers reach', async () => {
    const { net, changes, node, introduce, period } = harness();
    const [a, b, c, d] = [node('a'), node('b'), node('c'), node('d')];
    introduce(a, b, c, d);
    changes.clear();
    net.down.add(url('b'));

    await period(a);

    expect(net.calls.filter((x) => x.kind === 'probeVia').map((x) => x.to)).toEqual(
      expect.arrayContaining([url('c'), url('d')]),
    );
    expect(stateOf(a, 'b')).toBe('suspect');
    expect(changes.get('a')).toBe(1);
  });

  it('declares a suspect dead once the failure timeout passes without a refutation, and not before', async () => {
    const { clock, net, changes, node, introduce } = harness();
    const [a, b, c] = [node('a'), node('b'), node('c')];
    introduce(a, b, c);
    net.down.add(url('b'));
    await a.round();
    expect(stateOf(a, 'b')).toBe('suspect');
    const suspectedAt = clock.t;

    clock.t = suspectedAt + FAILURE_MS;
    await a.round();
    expect(stateOf(a, 'b')).toBe('suspect');

    // Time alone changes nothing: the suspect is still one until the next step looks.
    clock.t = suspectedAt + FAILURE_MS + 1;
    changes.clear();
    expect(stateOf(a, 'b')).toBe('suspect');
    expect(a.members().find((m) => m.id === 'b')!.state).toBe('suspect');
    expect(changes.size).toBe(0);

    await a.round();
    expect(stateOf(a, 'b')).toBe('dead');
    expect(changes.get('a')).toBe(1);
  });

  it('declares an overdue suspect dead when a message is merged, too', () => {
    const { clock, node } = harness();
    const a = node('a');
    a.receive({ from: 'c', members: [claim('b', 5, 'suspect'), claim('c', 5, 'alive')] });
    clock.t += FAILURE_MS + 1;
    a.receive({ from: 'c', members: [claim('c', 5, 'alive')] });
    expect(stateOf(a, 'b')).toBe('dead');
  });

  it('lets a refutation in the same message save an overdue suspect', () => {
    const { clock, node } = harness();
    const a = node('a');
    a.receive({ from: 'c', members: [claim('b', 5, 'suspect')] });
    clock.t += FAILURE_MS + 1;
    a.receive({ from: 'b', members: [claim('b', 6, 'alive')] });
    expect(stateOf(a, 'b')).toBe('alive');
  });

  it('answers a ping-req with whether the target answered it', async () => {
    const { net, node, introduce } = harness();
    const [a, b, c] = [node('a'), node('b'), node('c')];
    introduce(a, b, c);
    expect(await c.probeFor(url('b'))).toBe(true);
    net.down.add(url('b'));
    expect(await c.probeFor(url('b'))).toBe(false);
  });
});

describe('refutation', () => {
  it('a member that hears itself suspected raises its incarnation, and "alive" wins where it was suspected', async () => {
    const { node, introduce } = harness();
    const [a, b] = [node('a'), node('b')];
    introduce(a, b);
    const before = b.self.incarnation;
    a.receive({ from: 'c', members: [claim('b', before, 'suspect')] });
    expect(stateOf(a, 'b')).toBe('suspect');

    await a.round(); // the probe carries a's list, suspicion included, to b

    expect(b.self.incarnation).toBeGreaterThan(before);
    expect(b.self.state).toBe('alive');
    expect(stateOf(a, 'b')).toBe('alive');
    expect(a.member('b')!.incarnation).toBe(b.self.incarnation);
  });

  it('a member declared dead is probed now and then, and comes back by refuting', async () => {
    const { node, introduce } = harness(alwaysRoll);
    const [a, b] = [node('a'), node('b')];
    introduce(a, b);
    a.receive({ from: 'c', members: [claim('b', b.self.incarnation, 'dead')] });
    expect(stateOf(a, 'b')).toBe('dead');

    await a.round();

    expect(stateOf(a, 'b')).toBe('alive');
    expect(b.self.incarnation).toBe(1_001);
  });

  it('a claim about itself from a later incarnation, even "alive", is overtaken', () => {
    const { node } = harness();
    const a = node('a');
    a.receive({ from: 'b', members: [claim('a', 1_005, 'alive')] });
    expect(a.self).toMatchObject({ state: 'alive', incarnation: 1_006 });
    a.receive({ from: 'b', members: [claim('a', 1_003, 'dead')] });
    expect(a.self).toMatchObject({ state: 'alive', incarnation: 1_006 });
  });
});

describe('precedence of claims', () => {
  it('learns members from gossip, in whatever state they are claimed', () => {
    const { node } = harness();
    const a = node('a');
    a.receive({
      from: 'b',
      members: [claim('b', 5, 'alive'), claim('c', 7, 'suspect'), claim('d', 9, 'dead')],
    });
    expect(a.members().map((m) => [m.id, m.state])).toEqual([
      ['a', 'alive'],
      ['b', 'alive'],
      ['c', 'suspect'],
      ['d', 'dead'],
    ]);
  });

  it('lets worse news win within one incarnation, and only a newer incarnation bring a member back', () => {
    const { node } = harness();
    const a = node('a');
    a.receive({ from: 'b', members: [claim('b', 5, 'alive')] });
    a.receive({ from: 'c', members: [claim('b', 5, 'suspect')] });
    expect(stateOf(a, 'b')).toBe('suspect');
    a.receive({ from: 'c', members: [claim('b', 5, 'alive')] });
    expect(stateOf(a, 'b')).toBe('suspect');
    a.receive({ from: 'b', members: [claim('b', 6, 'alive')] });
    expect(stateOf(a, 'b')).toBe('alive');
    a.receive({ from: 'c', members: [claim('b', 6, 'dead')] });
    expect(stateOf(a, 'b')).toBe('dead');
    a.receive({ from: 'c', members: [claim('b', 6, 'suspect')] });
    expect(stateOf(a, 'b')).toBe('dead');
    a.receive({ from: 'c', members: [claim('b', 5, 'alive')] });
    expect(stateOf(a, 'b')).toBe('dead');
    a.receive({ from: 'b', members: [claim('b', 7, 'alive')] });
    expect(stateOf(a, 'b')).toBe('alive');
    a.receive({ from: 'c', members: [claim('b', 8, 'suspect')] });
    expect(stateOf(a, 'b')).toBe('suspect');
  });

  it("takes a member's URL and flags only from a newer incarnation", () => {
    const { changes, node } = harness();
    const a = node('a');
    a.receive({ from: 'b', members: [claim('b', 5, 'alive')] });
    changes.clear();
    a.receive({
      from: 'c',
      members: [{ ...claim('b', 5, 'alive'), url: 'http://elsewhere', leaving: true }],
    });
    expect(a.member('b')).toMatchObject({ url: url('b'), leaving: false });
    expect(changes.size).toBe(0);
    a.receive({
      from: 'b',
      members: [{ ...claim('b', 6, 'alive'), url: 'http://elsewhere', leaving: true, full: true }],
    });
    expect(a.member('b')).toMatchObject({ url: 'http://elsewhere', leaving: true, full: true });
    expect(changes.get('a')).toBe(1);
  });

  it('ignores an incarnation too far ahead of its clock, which would make a member dead for good', () => {
    const { clock, node } = harness();
    const a = node('a');
    a.receive({ from: 'b', members: [claim('b', 5, 'alive')] });
    const tooFar = clock.t + MAX_INCARNATION_LEAD_MS + 1;
    a.receive({
      from: 'c',
      members: [claim('b', tooFar, 'dead'), claim('a', Number.MAX_SAFE_INTEGER, 'dead')],
    });
    expect(stateOf(a, 'b')).toBe('alive');
    expect(a.self).toMatchObject({ state: 'alive', incarnation: 1_000 });
    // Within the bound, the claim stands, and the member can still refute it.
    a.receive({ from: 'c', members: [claim('b', tooFar - 1, 'dead')] });
    expect(stateOf(a, 'b')).toBe('dead');
  });

  it('skips malformed entries in a message', () => {
    const { node } = harness();
    const a = node('a');
    a.receive({
      from: 'b',
      members: [
        null,
        { id: 'x' },
        { ...claim('b', 5, 'alive'), incarnation: '5' },
        claim('c', 5, 'alive'),
      ] as never,
    });
    expect(a.members().map((m) => m.id)).toEqual(['a', 'c']);
  });
});

describe('flags this node announces', () => {
  it('raise its own incarnation and travel with its entry; the same flags again change nothing', async () => {
    const { changes, node, introduce } = harness();
    const [a, b] = [node('a'), node('b')];
    introduce(a, b);
    changes.clear();

    expect(a.announce({ leaving: true })).toBe(true);
    expect(a.self).toMatchObject({ leaving: true, full: false, incarnation: 1_001 });
    expect(changes.get('a')).toBe(1);
    expect(a.announce({ leaving: true })).toBe(false);
    expect(a.self.incarnation).toBe(1_001);

    await a.round();
    expect(b.member('a')).toMatchObject({ leaving: true, incarnation: 1_001, state: 'alive' });
  });
});

describe('finding the cluster', () => {
  it('asks up to 3 seeds a round while it knows nobody, and never asks itself again', async () => {
    const { net, node, period } = harness();
    const own = 'http://10.0.0.1:7000';
    const seeds = [own, ...[2, 3, 4, 5].map((i) => `http://10.0.0.${i}:7000`)];
    const a = node('a', { seeds, alias: own });

    for (let i = 0; i < 10; i++) {
      net.calls = [];
      await period(a);
      expect(net.calls).toHaveLength(3);
      expect(new Set(net.calls.map((c) => c.to)).size).toBe(3);
      if (i > 0) expect(net.calls.map((c) => c.to)).not.toContain(own);
    }

    // One seed comes up: a learns the cluster through it and stops asking seeds.
    const e = node('e');
    net.byUrl.set(seeds[1]!, e);
    await period(a);
    expect(stateOf(a, 'e')).toBe('alive');
    net.calls = [];
    await period(a);
    expect(net.calls).toEqual([{ from: url('a'), kind: 'exchange', to: url('e') }]);
  });

  it('asks a seed no live member stands behind now and then, so clusters started apart join', async () => {
    const { node, introduce } = harness(alwaysRoll);
    const [a, b] = [node('a', { seeds: [url('c')] }), node('b')];
    const [c, d] = [node('c'), node('d')];
    introduce(a, b);
    introduce(c, d);

    await a.round();

    expect(a.members().map((m) => m.id)).toEqual(['a', 'b', 'c', 'd']);
    expect(c.member('a')?.state).toBe('alive');
  });

  it('merges a healed partition back into one view', async () => {
    const { net, node, introduce, period } = harness(seeded(42));
    const nodes = ['a', 'b', 'c', 'd', 'e'].map((id) => node(id));
    introduce(...nodes);
    const [left, right] = [nodes.slice(0, 2), nodes.slice(2)];
    for (const l of left) for (const r of right) net.cut(l.self.url, r.self.url);

    const split = (): boolean =>
      left.every((l) => right.every((r) => stateOf(l, r.self.id) === 'dead')) &&
      right.every((r) => left.every((l) => stateOf(r, l.self.id) === 'dead'));
    for (let i = 0; i < 100 && !split(); i++) await period(...nodes);
    expect(split()).toBe(true);

    // Healed, no live member leads across: only the occasional probe of a dead member does, and
    // the first exchange lets the other side refute.
    net.heal();
    const whole = (): boolean => nodes.every((x) => x.members().every((m) => m.state === 'alive'));
    for (let i = 0; i < 100 && !whole(); i++) await period(...nodes);
    expect(whole()).toBe(true);
  });
});
