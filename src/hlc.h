/*
 * hlc.h: the origin's hybrid logical clock (hlc.c) and the bound on a
 * device's clock (apply.c).  An HLC is milliseconds since the epoch
 * shifted left by 16 bits, plus a counter.
 */
#ifndef OFS_HLC_H
#define OFS_HLC_H

#include "postgres.h"

extern int64 HlcNow(void);
extern int64 WallHlc(void);
extern void HlcObserve(int64 remote);
extern int64 HlcCurrent(void);
extern void HlcReserveAhead(void);
extern void HlcShmemStartup(void);

/* ofs.max_clock_skew, and a device's HLC clamped by it */
extern int	ofs_max_clock_skew_ms;
extern int64 ofs_clock_ahead_ms;
extern int64 ClampHlc(int64 hlc);

#endif							/* OFS_HLC_H */
