import { silentLogger } from '../../shared/logging';
import { Discovery, type Resolver } from '../../services/storage-node/src/membership/discovery';

const RELOOKUP_MS = 5_000;

function discovery(o: { seeds?: string[]; dnsName?: string; resolver?: Resolver } = {}): {
  d: Discovery;
  clock: { t: number; now(): number };
} {
  const clock = {
    t: 1_000_000,
    now() {
      return this.t;
    },
  };
  const d = new Discovery(
    {
      selfUrl: 'http://a.headless:7000',
      seeds: o.seeds ?? [],
      dnsName: o.dnsName,
      port: 7000,
      relookupMs: RELOOKUP_MS,
    },
    silentLogger(),
    o.resolver,
    clock,
  );
  return { d, clock };
}

describe('discovery', () => {
  it('offers the configured seeds, never its own URL nor one that turned out to reach itself', async () => {
    const { d } = discovery({
      seeds: ['http://a.headless:7000', 'http://10.0.0.1:7000', 'http://10.0.0.2:7000'],
    });
    expect(await d.seeds()).toEqual(['http://10.0.0.1:7000', 'http://10.0.0.2:7000']);
    d.markSelf('http://10.0.0.1:7000');
    expect(await d.seeds()).toEqual(['http://10.0.0.2:7000']);
  });

  it('adds the addresses of --discovery-dns, and looks the name up again only every re-lookup period', async () => {
    const answers = [
      [
        { address: '10.0.0.1', family: 4 },
        { address: 'fd00::2', family: 6 },
      ],
      [{ address: '10.0.0.3', family: 4 }],
    ];
    const asked: string[] = [];
    const resolver: Resolver = async (name) => {
      asked.push(name);
      return answers.shift() ?? [];
    };
    const { d, clock } = discovery({ seeds: ['http://seed:7000'], dnsName: 'shoal.svc', resolver });

    expect(await d.seeds()).toEqual(['http://seed:7000', 'http://10.0.0.1:7000', 'http://[fd00::2]:7000']);
    clock.t += RELOOKUP_MS - 1;
    expect(await d.seeds()).toEqual(['http://seed:7000', 'http://10.0.0.1:7000', 'http://[fd00::2]:7000']);
    expect(asked).toEqual(['shoal.svc']);

    clock.t += 1;
    expect(await d.seeds()).toEqual(['http://seed:7000', 'http://10.0.0.3:7000']);
    expect(asked).toEqual(['shoal.svc', 'shoal.svc']);
  });

  it('keeps the last answer when a lookup fails, and tries again a period later', async () => {
    const results: Array<Error | Array<{ address: string; family: number }>> = [
      [{ address: '10.0.0.1', family: 4 }],
      new Error('ESERVFAIL'),
      [{ address: '10.0.0.2', family: 4 }],
    ];
    const resolver: Resolver = async () => {
      const next = results.shift()!;
      if (next instanceof Error) throw next;
      return next;
    };
    const { d, clock } = discovery({ dnsName: 'shoal.svc', resolver });
    expect(await d.seeds()).toEqual(['http://10.0.0.1:7000']);
    clock.t += RELOOKUP_MS;
    expect(await d.seeds()).toEqual(['http://10.0.0.1:7000']);
    clock.t += RELOOKUP_MS;
    expect(await d.seeds()).toEqual(['http://10.0.0.2:7000']);
  });

  it('offers a URL once when a seed and the DNS name both give it', async () => {
    const resolver: Resolver = async () => [{ address: '10.0.0.1', family: 4 }];
    const { d } = discovery({ seeds: ['http://10.0.0.1:7000'], dnsName: 'shoal.svc', resolver });
    expect(await d.seeds()).toEqual(['http://10.0.0.1:7000']);
  });
});
