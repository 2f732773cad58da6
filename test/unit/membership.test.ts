import { silentLogger } from '../../shared/logging';
import type { MemberDigest } from '../../shared/protocol';
import { Membership } from '../../services/storage-node/src/membership/membership';
import type { PeerClient } from '../../services/storage-node/src/peers/peer-client';

function membership(failureTimeoutMs = 1_000, selfId = 'a'): Membership {
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
    {} as PeerClient,
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

describe('SWIM membership rules', () => {
  it('learns members from gossip and places only those not dead', () => {
    const m = membership();
    m.receive({
      from: 'b',
      members: [claim('b', 5, 'alive'), claim('c', 7, 'alive'), claim('d', 9, 'dead')],
    });
    expect(m.view().map((v) => v.id)).toEqual(['a', 'b', 'c', 'd']);
    expect([...m.placement().members]).toEqual(['a', 'b', 'c']);
  });

  it('lets worse news win within one incarnation, and only a newer incarnation bring a member back', () => {
    const m = membership();
    m.receive({ from: 'b', members: [claim('b', 5, 'alive')] });
    m.receive({ from: 'c', members: [claim('b', 5, 'suspect')] });
    expect(stateOf(m, 'b')).toBe('suspect');
    m.receive({ from: 'c', members: [claim('b', 5, 'alive')] });
    expect(stateOf(m, 'b')).toBe('suspect');
    m.receive({ from: 'b', members: [claim('b', 6, 'alive')] });
    expect(stateOf(m, 'b')).toBe('alive');
    m.receive({ from: 'c', members: [claim('b', 6, 'dead')] });
    expect(stateOf(m, 'b')).toBe('dead');
    expect(m.placement().members).not.toContain('b');
    m.receive({ from: 'c', members: [claim('b', 5, 'alive')] });
    expect(stateOf(m, 'b')).toBe('dead');
    m.receive({ from: 'b', members: [claim('b', 7, 'alive')] });
    expect(stateOf(m, 'b')).toBe('alive');
    expect(m.placement().members).toContain('b');
  });

  it('refutes a suspicion about itself by raising its incarnation', () => {
    const m = membership();
    const before = m.digest().members.find((d) => d.id === 'a')!.incarnation;
    m.receive({ from: 'b', members: [claim('a', before, 'suspect')] });
    const after = m.digest().members.find((d) => d.id === 'a')!;
    expect(after.state).toBe('alive');
    expect(after.incarnation).toBeGreaterThan(before);
  });

  it('declares a suspect dead once it has not refuted within the failure timeout', async () => {
    const m = membership(200);
    m.receive({ from: 'c', members: [claim('b', 5, 'suspect')] });
    expect(stateOf(m, 'b')).toBe('suspect');
    await new Promise((r) => setTimeout(r, 250));
    expect(stateOf(m, 'b')).toBe('dead');
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
