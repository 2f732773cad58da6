import { silentLogger } from '../../shared/logging';
import type { MemberDigest } from '../../shared/protocol';
import { Membership } from '../../services/storage-node/src/membership/membership';
import type { PeerClient } from '../../services/storage-node/src/peers/peer-client';

/** Peers that never answer. */
const unreachable = {
  gossip: () => Promise.reject(new Error('unreachable')),
  probe: () => Promise.reject(new Error('unreachable')),
} as unknown as PeerClient;

function membership(failureTimeoutMs = 1_000, selfId = 'a', peers = {} as PeerClient): Membership {
  return new Membership(
    {
      selfId,
      selfUrl: `http://${selfId}`,
      seeds: [],
      discoveryDns: undefined,
      port: 7000,
      replicas: 3,
      gossipIntervalMs: 100,
      failureTimeoutMs,
    },
    peers,
    silentLogger(),
    1_000,
  );
}

const claim = (id: string, incarnation: number, state: MemberDigest['state']): MemberDigest => ({
  id,
  url: `http://${id}`,
  incarnation,
  state,
});

function stateOf(m: Membership, id: string): string | undefined {
  return m.view().find((v) => v.id === id)?.state;
}

/** The facade the node uses; the detector's own rules are in swim.test.ts, discovery's in discovery.test.ts. */
describe('membership view', () => {
  afterEach(() => jest.useRealTimers());

  it('learns members from gossip and places only those not dead', () => {
    const m = membership();
    m.receive({
      from: 'b',
      members: [claim('b', 5, 'alive'), claim('c', 7, 'alive'), claim('d', 9, 'dead')],
    });
    expect(m.view().map((v) => v.id)).toEqual(['a', 'b', 'c', 'd']);
    expect([...m.placement().members]).toEqual(['a', 'b', 'c']);
  });

  it('changes nothing when read: an overdue suspect leaves placement at the next gossip step', async () => {
    jest.useFakeTimers({ now: 100_000 });
    const m = membership(200, 'a', unreachable);
    const changed = jest.fn();
    m.on('placement-changed', changed);
    m.receive({ from: 'c', members: [claim('b', 5, 'suspect'), claim('c', 5, 'alive')] });
    expect(stateOf(m, 'b')).toBe('suspect');
    expect(changed).toHaveBeenCalledTimes(1);

    jest.setSystemTime(100_250);
    expect(stateOf(m, 'b')).toBe('suspect');
    expect(m.member('b')?.state).toBe('suspect');
    expect(m.placement().members).toEqual(['a', 'b', 'c']);
    expect(changed).toHaveBeenCalledTimes(1);

    await m.round();
    expect(stateOf(m, 'b')).toBe('dead');
    expect(m.placement().members).toEqual(['a', 'c']);
    expect(changed).toHaveBeenCalledTimes(2);
  });

  it('tells which members have been dead for less than a given time, and forgets a death once refuted', () => {
    jest.useFakeTimers({ now: 100_000 });
    const m = membership();
    m.receive({ from: 'c', members: [claim('b', 5, 'dead'), claim('c', 5, 'alive')] });
    expect(m.deadWithin(60_000)).toEqual(['b']);
    jest.setSystemTime(100_000 + 60_001);
    expect(m.deadWithin(60_000)).toEqual([]);
    expect(m.deadWithin(120_000)).toEqual(['b']);
    m.receive({ from: 'b', members: [claim('b', 6, 'alive')] });
    expect(m.deadWithin(120_000)).toEqual([]);
  });
});

describe('flags a member announces about itself', () => {
  it('travel in its gossip digest with a new incarnation, and change placement', () => {
    const m = membership();
    m.receive({ from: 'b', members: [claim('b', 5, 'alive')] });
    m.setLeaving(true);
    m.setFull(true);
    const self = m.digest().members.find((d) => d.id === 'a')!;
    expect(self).toMatchObject({ leaving: true, full: true });
    expect(m.placement().members).toEqual(['b']);

    const other = membership(1_000, 'c');
    other.receive(m.digest());
    expect(other.isLeaving('a')).toBe(true);
    expect(other.isFull('a')).toBe(true);
  });
});

describe('a settled view', () => {
  afterEach(() => jest.useRealTimers());

  it('comes a settle period after a member last entered placement; deaths and drains do not delay it', () => {
    jest.useFakeTimers({ now: 100_000 });
    const m = membership(1_000);
    // One DNS re-lookup period (at least 5 s) plus 4 gossip intervals of 100 ms.
    expect(m.settlePeriodMs).toBe(5_400);
    expect(m.settledAt()).toBe(105_400);

    jest.setSystemTime(110_000);
    m.receive({ from: 'b', members: [claim('b', 5, 'alive'), claim('c', 5, 'alive')] });
    expect(m.settledAt()).toBe(115_400);

    // Known members changing their minds, dying or draining grow nothing.
    jest.setSystemTime(111_000);
    m.receive({ from: 'b', members: [claim('b', 6, 'alive'), claim('c', 5, 'dead')] });
    m.receive({ from: 'b', members: [{ ...claim('b', 7, 'alive'), leaving: true }] });
    expect(m.placement().members).toEqual(['a']);
    expect(m.settledAt()).toBe(115_400);

    // A member back from the dead, or one that stops draining, is placed again: that is growth.
    jest.setSystemTime(112_000);
    m.receive({ from: 'c', members: [claim('c', 6, 'alive')] });
    expect(m.settledAt()).toBe(117_400);
    jest.setSystemTime(113_000);
    m.receive({ from: 'b', members: [claim('b', 8, 'alive')] });
    expect(m.placement().members).toEqual(['a', 'b', 'c']);
    expect(m.settledAt()).toBe(118_400);
  });
});

describe('seeds', () => {
  it('learns the cluster in its first round even when a seed is this node itself, and skips that seed after', async () => {
    for (let attempt = 0; attempt < 20; attempt++) {
      const own = 'http://10.0.0.1:7000';
      const calls: string[] = [];
      const peers = {
        gossip: async (url: string) => {
          calls.push(url);
          // A headless Service's name resolves to every pod, this one included.
          if (url === own) return self.digest();
          return { from: 'b', members: [claim('b', 5, 'alive')] };
        },
      } as unknown as PeerClient;
      const self = new Membership(
        {
          selfId: 'a',
          selfUrl: 'http://a.headless:7000',
          seeds: [own, 'http://10.0.0.2:7000'],
          discoveryDns: undefined,
          port: 7000,
          replicas: 3,
          gossipIntervalMs: 100,
          failureTimeoutMs: 1_000,
        },
        peers,
        silentLogger(),
      );
      await self.start();
      self.stop();
      expect(self.view().map((v) => v.id)).toEqual(['a', 'b']);
      for (let i = 0; i < 10; i++) await self.round();
      expect(calls.filter((url) => url === own).length).toBeLessThanOrEqual(1);
    }
  });
});

describe('the gossip loop', () => {
  it('has done one round when start() resolves, goes on every interval, and ends at stop()', async () => {
    const rounds: number[] = [];
    const peers = {
      gossip: async () => {
        rounds.push(Date.now());
        return { from: 'b', members: [claim('b', 5, 'alive')] };
      },
    } as unknown as PeerClient;
    const m = new Membership(
      {
        selfId: 'a',
        selfUrl: 'http://a',
        seeds: ['http://b'],
        discoveryDns: undefined,
        port: 7000,
        replicas: 3,
        gossipIntervalMs: 50,
        failureTimeoutMs: 1_000,
      },
      peers,
      silentLogger(),
    );
    await m.start();
    expect(rounds).toHaveLength(1);
    expect(m.view().map((v) => v.id)).toEqual(['a', 'b']);

    await new Promise((r) => setTimeout(r, 400));
    m.stop();
    // About 8 periods of 50 ms; the bounds leave room for a busy machine.
    expect(rounds.length).toBeGreaterThanOrEqual(4);
    expect(rounds.length).toBeLessThanOrEqual(10);
    const after = rounds.length;
    await new Promise((r) => setTimeout(r, 200));
    expect(rounds).toHaveLength(after);
  });
});
