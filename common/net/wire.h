/* wire.h: shiftforge's wire protocol constants and the checked codec.
 *
 * Every frame of application data is one sf.Envelope (proto/shiftforge.proto).
 * sf_wire_decode() never trusts a peer: it bounds the frame size, decodes with
 * protobuf-c, checks the protocol version, that a body is set, and per-field
 * caps (strings, payloads, repeated counts).  A frame that fails any check is
 * rejected with a message saying which; callers count it and drop it.
 *
 * Protocol constants live here, in the spirit of the zguide's mdp.h.
 */
#ifndef SF_WIRE_H
#define SF_WIRE_H

#include <stddef.h>
#include <stdint.h>

#include "proto/shiftforge.pb-c.h"

#define SF_PROTO_VERSION 1u

#define SF_WIRE_MAX_FRAME (16u << 20)   /* the protocol's cap on a frame */
/* ZMQ_MAXMSGSIZE on every socket: twice the protocol's cap, so that a frame a
 * little over it is still read, counted and answered with an Error naming the
 * cap, while a far larger one (memory) makes libzmq drop the connection. */
#define SF_WIRE_MAX_RECV (2u * SF_WIRE_MAX_FRAME)
#define SF_WIRE_MAX_ID 64u              /* worker ids (and run ids, kinds) */
#define SF_WIRE_MAX_STRING 4096u        /* ids, kinds, errors */
#define SF_WIRE_MAX_PAYLOAD (4u << 20)  /* job and result payloads */
#define SF_WIRE_MAX_SPEC (8u << 20)     /* a run spec (class lists of 1000+) */
#define SF_WIRE_MAX_BATCH 8192u         /* jobs or results in one envelope */
#define SF_WIRE_MAX_KINDS 64u
#define SF_WIRE_MAX_ROLLOUTS 4096u      /* rollouts in one batch */
#define SF_WIRE_MAX_TOKENS 4096u        /* query or response length */
#define SF_WIRE_CHUNK (1u << 20)        /* policy image chunk size */

#define SF_HEARTBEAT_MS 1000u           /* default heartbeat interval */
#define SF_LIVENESS 3u                  /* silent intervals before death */

/* Job ids: run number in the high 32 bits, job index in the run below. */
static inline uint64_t sf_job_id(uint32_t run, uint32_t index) { return ((uint64_t)run << 32) | index; }
static inline uint32_t sf_job_run(uint64_t id) { return (uint32_t)(id >> 32); }
static inline uint32_t sf_job_index(uint64_t id) { return (uint32_t)id; }

/* Decodes and checks a frame.  On success *out is a message freed with
 * sf_wire_free().  On failure returns SF_EPROTO and writes why into err.
 * An Error body is accepted whatever version the frame carries (its fields
 * are the same in every version). */
int sf_wire_decode(const void *buf, size_t len, Sf__Envelope **out, char *err, size_t errlen);
void sf_wire_free(Sf__Envelope *env);

/* sf_wire_decode for daemons: a bad frame increments *bad and is logged
 * once per power of two of *bad (a flood cannot flood the log), naming
 * `from`; returns the message or NULL. */
Sf__Envelope *sf_wire_decode_counted(const void *buf, size_t len, uint64_t *bad, const char *from);

/* What the fields every version keeps say about a frame, read from the
 * protobuf wire format itself (so it works on a frame of any version, or one
 * our schema cannot decode): *version (field 1; 0 when absent) and *body, the
 * field number of its body (0 when none; SF__ENVELOPE__BODY_ERROR is an
 * Error).  Returns 0, or SF_EPROTO when the bytes are not protobuf. */
int sf_wire_peek(const void *buf, size_t len, uint32_t *version, uint32_t *body);

/* Sends [rid][Error{code, message, version, peer_version, fatal}], as
 * sf_wire_send does; the answer to a refused frame (never to an Error). */
int sf_wire_send_error(void *sock, const void *rid, size_t rid_len, int code, const char *message,
                       uint32_t peer_version, int fatal, uint8_t **buf, size_t *cap);

/* Packs env (its version is set here) into *buf, growing it as needed: *buf
 * and *cap belong to the caller and are reused between calls, so the hot path
 * does not allocate.  Returns the packed length, or a negative code. */
long sf_wire_pack(Sf__Envelope *env, uint8_t **buf, size_t *cap);

/* Sends [rid][env] (rid may be NULL for a DEALER) without blocking.
 * Returns 0, SF_EIO with errno set (EAGAIN at the high-water mark,
 * EHOSTUNREACH for a gone ROUTER peer). */
int sf_wire_send(void *sock, const void *rid, size_t rid_len, Sf__Envelope *env,
                 uint8_t **buf, size_t *cap);

/* Applies the socket options every shiftforge socket has: ZMQ_MAXMSGSIZE
 * (SF_WIRE_MAX_RECV), linger, high-water marks. */
int sf_wire_sockopts(void *sock);

#endif
