/**
 * Returns the partition of a user key: FNV-1a (32-bit) of its UTF-16 code units, modulo
 * the partition count. Stable across processes and releases, because changing it would
 * move a user's queued events to another lane and break their order.
 */
export function partitionOf(userKey: string, partitions: number): number {
  let hash = 0x811c9dc5;
  for (let i = 0; i < userKey.length; i++) {
    hash ^= userKey.charCodeAt(i);
    hash = Math.imul(hash, 0x01000193);
  }
  return (hash >>> 0) % partitions;
}
