/**
 * Decoded images kept in memory between epochs (tf.data's `cache()` placed before the random
 * augmentation): the 8-bit RGB each file decodes to at a loader's working size, so later epochs
 * skip reading and decoding the JPEG and only augment. What is kept is exactly what a decode gives
 * (decoding is deterministic and the pipeline only reads its source), so the batches are the same
 * with or without the cache.
 *
 * Bounded by bytes. Images are kept until the budget is full and never evicted: every epoch visits
 * every image once in a new order, and under that access pattern an LRU policy evicts each image
 * before its next use once the set outgrows the budget, while a fixed subset keeps its share of hits.
 */
import type { RawImage } from './image.ts';

/** Counters of a cache, for logs and tests. */
export interface ImageCacheStats {
  readonly hits: number;
  readonly misses: number;
  readonly entries: number;
  readonly bytes: number;
  readonly maxBytes: number;
}

export interface ImageCache {
  /** The decoded image stored under `key`, counting a hit or a miss. */
  get(key: string): RawImage | undefined;
  /** Stores `img` under `key` if it fits the remaining budget; whether it was stored. */
  put(key: string, img: RawImage): boolean;
  /** False once an image did not fit (decoders need not hand their images back any more). */
  readonly accepting: boolean;
  readonly stats: ImageCacheStats;
}

/**
 * A cache of at most `maxBytes` bytes of pixels (0 keeps nothing). Share one between the loaders of
 * a run (LoaderOptions.cache); the key includes the decode settings, so loaders of different
 * working sizes do not collide.
 * @example const cache = createImageCache(512 * 2 ** 20);
 */
export function createImageCache(maxBytes: number): ImageCache {
  if (!(Number.isFinite(maxBytes) && maxBytes >= 0)) throw new Error(`createImageCache: maxBytes must be a finite number ≥ 0, got ${maxBytes}`);
  const map = new Map<string, RawImage>();
  let bytes = 0;
  let hits = 0;
  let misses = 0;
  let accepting = maxBytes > 0;
  return {
    get(key) {
      const img = map.get(key);
      if (img) hits++;
      else misses++;
      return img;
    },
    put(key, img) {
      if (map.has(key)) return true;
      if (bytes + img.data.byteLength > maxBytes) {
        accepting = false;
        return false;
      }
      // An own copy: the decoder's buffer may be a view into a larger pooled one.
      map.set(key, { data: img.data.slice(), width: img.width, height: img.height });
      bytes += img.data.byteLength;
      return true;
    },
    get accepting() {
      return accepting;
    },
    get stats() {
      return { hits, misses, entries: map.size, bytes, maxBytes };
    },
  };
}
