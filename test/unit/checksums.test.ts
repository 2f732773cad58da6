import { createHash, randomBytes } from 'node:crypto';
import { crc32 } from 'node:zlib';
import { AwsCrc32c } from '@aws-crypto/crc32c';
import { Crc64Nvme } from '@aws-sdk/crc64-nvme';
import {
  CHECKSUM_ALGORITHMS,
  type ChecksumAlgorithm,
  algorithmOfHeader,
  checksumAlgorithmOf,
  checksumHeader,
  combineCrcs,
  createChecksum,
} from '../../shared/checksums';

function checksumOf(algorithm: ChecksumAlgorithm, chunks: Buffer[]): Buffer {
  const sum = createChecksum(algorithm);
  for (const chunk of chunks) sum.update(chunk);
  return sum.digest();
}

/** What AWS (or Node, for the algorithms it has) computes for the whole buffer at once. */
async function reference(algorithm: ChecksumAlgorithm, data: Buffer): Promise<Buffer> {
  switch (algorithm) {
    case 'crc32': {
      const out = Buffer.alloc(4);
      out.writeUInt32BE(crc32(data));
      return out;
    }
    case 'crc32c': {
      const sum = new AwsCrc32c();
      sum.update(data);
      return Buffer.from(await sum.digest());
    }
    case 'crc64nvme': {
      const sum = new Crc64Nvme();
      sum.update(data);
      return Buffer.from(await sum.digest());
    }
    case 'sha1':
    case 'sha256':
      return createHash(algorithm).update(data).digest();
  }
}

/** A seeded generator (mulberry32) for the chunk lengths, so a failing split can be reproduced. */
function prng(seed: number): () => number {
  let state = seed >>> 0;
  return () => {
    state = (state + 0x6d2b79f5) | 0;
    let t = Math.imul(state ^ (state >>> 15), 1 | state);
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
    return (t ^ (t >>> 14)) >>> 0;
  };
}

/** Reproducible random bytes, from SHAKE256: a JS loop under jest takes seconds to make megabytes. */
function randomData(size: number, seed: number): Buffer {
  return createHash('shake256', { outputLength: size }).update(`checksums ${seed}`).digest();
}

/** Cuts data into chunks of random lengths: half of them a few bytes, to land off every alignment. */
function randomSplit(data: Buffer, maxChunk: number, next: () => number): Buffer[] {
  const chunks: Buffer[] = [];
  for (let at = 0; at < data.length;) {
    const length = 1 + (next() % 2 === 0 ? next() % 17 : next() % maxChunk);
    chunks.push(data.subarray(at, at + length));
    at += length;
  }
  return chunks;
}

describe('checksums', () => {
  const check = Buffer.from('123456789');

  it.each<[ChecksumAlgorithm, string, string]>([
    ['crc32', 'cbf43926', '00000000'],
    ['crc32c', 'e3069283', '00000000'],
    ['crc64nvme', 'ae8b14860a799888', '0000000000000000'],
    ['sha1', 'f7c3bc1d808e04732adf679965ccc34ca7ae3441', 'da39a3ee5e6b4b0d3255bfef95601890afd80709'],
    [
      'sha256',
      '15e2b0d3c33891ebb0f1ef609ec419420c20e320ce94c65fbc8c3312448eb225',
      'e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855',
    ],
  ])('%s gives the standard check value for "123456789" and for no bytes', (algorithm, checkValue, empty) => {
    expect(checksumOf(algorithm, [check]).toString('hex')).toBe(checkValue);
    expect(
      checksumOf(
        algorithm,
        [...check].map((byte) => Buffer.of(byte)),
      ).toString('hex'),
    ).toBe(checkValue);
    expect(checksumOf(algorithm, []).toString('hex')).toBe(empty);
    expect(checksumOf(algorithm, [Buffer.alloc(0)]).toString('hex')).toBe(empty);
  });

  it('digests to the bytes the header carries in base64', () => {
    expect(checksumOf('crc32', [check]).toString('base64')).toBe('y/Q5Jg==');
    expect(checksumOf('crc32c', [check]).toString('base64')).toBe('4waSgw==');
    expect(checksumOf('crc64nvme', [check]).toString('base64')).toBe('rosUhgp5mIg=');
  });

  const sizes = [0, 1, 7, 8, 9, 1000, 64 * 1024 + 3, 5 * 1024 * 1024 + 1];

  it.each(sizes)('match AWS and Node on %i random bytes however they are split', async (size) => {
    const next = prng(size + 1);
    const data = randomData(size, size);
    const splits: Buffer[][] = [[data], randomSplit(data, 4096, next), randomSplit(data, 256 * 1024, next)];
    if (size <= 64 * 1024 + 3) splits.push(randomSplit(data, 64, next));
    if (size <= 1000) splits.push([...data].map((byte) => Buffer.of(byte)));
    for (const algorithm of CHECKSUM_ALGORITHMS) {
      const expected = (await reference(algorithm, data)).toString('hex');
      for (const chunks of splits)
        expect([algorithm, checksumOf(algorithm, chunks).toString('hex')]).toEqual([algorithm, expected]);
    }
  });

  it('keeps separate state in separate checksums', () => {
    const first = createChecksum('crc64nvme');
    const second = createChecksum('crc64nvme');
    first.update(Buffer.from('1234'));
    second.update(check);
    first.update(Buffer.from('56789'));
    expect(first.digest()).toEqual(second.digest());
  });

  it('names the header of each algorithm, and the algorithm of each header', () => {
    expect(CHECKSUM_ALGORITHMS.map(checksumHeader)).toEqual([
      'x-amz-checksum-crc32',
      'x-amz-checksum-crc32c',
      'x-amz-checksum-crc64nvme',
      'x-amz-checksum-sha1',
      'x-amz-checksum-sha256',
    ]);
    for (const algorithm of CHECKSUM_ALGORITHMS) {
      expect(algorithmOfHeader(checksumHeader(algorithm))).toBe(algorithm);
      expect(algorithmOfHeader(checksumHeader(algorithm).toUpperCase())).toBe(algorithm);
    }
    expect(algorithmOfHeader('X-Amz-Checksum-Crc64Nvme')).toBe('crc64nvme');
    for (const other of [
      'x-amz-checksum-algorithm',
      'x-amz-checksum-type',
      'x-amz-checksum-md5',
      'x-amz-checksum-',
      'x-amz-checksum-crc64',
      'x-amz-sdk-checksum-algorithm',
      'content-md5',
      'crc32',
      '',
    ])
      expect(algorithmOfHeader(other)).toBeUndefined();
  });

  it('parses the algorithm names clients send, in any case', () => {
    expect(['CRC32', 'CRC32C', 'CRC64NVME', 'SHA1', 'SHA256'].map(checksumAlgorithmOf)).toEqual([
      'crc32',
      'crc32c',
      'crc64nvme',
      'sha1',
      'sha256',
    ]);
    expect(['crc32', 'Crc32c', 'crc64nvme', 'Sha1', 'sHA256'].map(checksumAlgorithmOf)).toEqual([
      ...CHECKSUM_ALGORITHMS,
    ]);
    for (const other of [
      'MD5',
      'SHA-256',
      'CRC64',
      'CRC-32',
      ' CRC32',
      'x-amz-checksum-crc32',
      'toString',
      '',
    ])
      expect(checksumAlgorithmOf(other)).toBeUndefined();
  });
});

describe('combineCrcs', () => {
  const whole = (algorithm: ChecksumAlgorithm, data: Buffer): Buffer => {
    const sum = createChecksum(algorithm);
    sum.update(data);
    return sum.digest();
  };

  it.each(['crc32', 'crc32c', 'crc64nvme'] as const)(
    '%s: the CRC of the parts together, from their CRCs and lengths alone',
    (algorithm) => {
      for (const sizes of [[0], [1], [5, 0, 3], [1, 1, 1, 1], [4096, 70_000, 1, 12_345], [0, 0]]) {
        const parts = sizes.map((n) => randomBytes(n));
        const combined = combineCrcs(
          algorithm,
          parts.map((p) => ({ crc: whole(algorithm, p), size: p.length })),
        );
        expect(combined.toString('hex')).toBe(whole(algorithm, Buffer.concat(parts)).toString('hex'));
      }
      expect(combineCrcs(algorithm, []).equals(whole(algorithm, Buffer.alloc(0)))).toBe(true);
    },
  );

  it('refuses the SHAs, which do not combine', () => {
    expect(() => combineCrcs('sha256', [{ crc: Buffer.alloc(32), size: 1 }])).toThrow('do not combine');
  });
});
