/*
 * err.h - what a caller should do about a failure.
 *
 * A function that fills a caller's (err, errlen) returns 0 on success and,
 * where the caller must choose between retrying, setting one message
 * aside and stopping, one of these classes (all negative, so "< 0" still
 * reads "failed").  Callers decide by the class, never by the text.
 */
#ifndef PGRELAY_ERR_H
#define PGRELAY_ERR_H

enum pgr_err {
	PGR_OK = 0,
	/* a connection, server or broker cannot do it now: retry, backing off */
	PGR_RETRY = -1,
	/* this row or message is at fault (SQLSTATE class 22 or 23): set it
	 * aside (the DLQ) and go on with the others */
	PGR_DATA = -2,
	/* the configuration contradicts what exists (a topic's partition
	 * count, a topic name): exit CFG_EXIT_CONFIG, do not restart */
	PGR_CONFIG = -3,
	/* a Kafka producer handle is dead (librdkafka raised a fatal error,
	 * such as being fenced by a newer producer with the same
	 * transactional.id): destroy it, never send with it again */
	PGR_FATAL = -4,
};

#endif
