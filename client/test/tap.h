/*
 * tap.h: a tiny Test Anything Protocol helper for the client's unit tests.
 *
 *   ok(cond, "what %s", ...)      one test line: "ok N - what" or "not ok N - what"
 *   is_int(got, want, "what")     integers (int64) compared, both shown on failure
 *   is_str(got, want, "what")     strings compared (NULL allowed), both shown on failure
 *   diag("...")                   a "# ..." comment line
 *   done_testing()                prints the plan "1..N"; returns 0 when all passed
 *
 * Output goes to stdout, flushed after every line, so that a crash (the
 * sanitizers abort) still leaves the lines printed before it.
 */
#ifndef OFS_TAP_H
#define OFS_TAP_H

#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

static int	tap_run;
static int	tap_failed;

static void tap_vline(int pass, const char *fmt, va_list ap) __attribute__((format(printf, 2, 0)));
static void
tap_vline(int pass, const char *fmt, va_list ap)
{
	char		desc[1024];
	char	   *c;

	tap_run++;
	if (!pass)
		tap_failed++;
	vsnprintf(desc, sizeof(desc), fmt, ap);
	for (c = desc; *c; c++)		/* one line per test, whatever the description holds */
		if (*c == '\n' || *c == '\r')
			*c = ' ';
	printf("%s %d - %s\n", pass ? "ok" : "not ok", tap_run, desc);
	fflush(stdout);
}

static void diag(const char *fmt, ...) __attribute__((format(printf, 1, 2), unused));
static void
diag(const char *fmt, ...)
{
	va_list		ap;
	char		text[8192];
	char	   *line = text;
	char	   *nl;

	va_start(ap, fmt);
	vsnprintf(text, sizeof(text), fmt, ap);
	va_end(ap);
	/* Every line of a diagnostic is a comment. */
	while ((nl = strchr(line, '\n')) != NULL)
	{
		*nl = '\0';
		printf("# %s\n", line);
		line = nl + 1;
		if (strncmp(line, "# ", 2) == 0)
			line += 2;
	}
	printf("# %s\n", line);
	fflush(stdout);
}

static int	tap_ok(int pass, const char *file, int line, const char *fmt, ...) __attribute__((format(printf, 4, 5), unused));
static int
tap_ok(int pass, const char *file, int line, const char *fmt, ...)
{
	va_list		ap;

	va_start(ap, fmt);
	tap_vline(pass, fmt, ap);
	va_end(ap);
	if (!pass)
		diag("  failed at %s line %d", file, line);
	return pass;
}

static int	tap_is_int(int64_t got, int64_t want, const char *file, int line, const char *fmt, ...) __attribute__((format(printf, 5, 6), unused));
static int
tap_is_int(int64_t got, int64_t want, const char *file, int line, const char *fmt, ...)
{
	va_list		ap;
	int			pass = got == want;

	va_start(ap, fmt);
	tap_vline(pass, fmt, ap);
	va_end(ap);
	if (!pass)
	{
		diag("  failed at %s line %d", file, line);
		diag("       got: %lld", (long long) got);
		diag("  expected: %lld", (long long) want);
	}
	return pass;
}

static int	tap_is_str(const char *got, const char *want, const char *file, int line, const char *fmt, ...) __attribute__((format(printf, 5, 6), unused));
static int
tap_is_str(const char *got, const char *want, const char *file, int line, const char *fmt, ...)
{
	va_list		ap;
	int			pass = (got == NULL && want == NULL) || (got && want && strcmp(got, want) == 0);

	va_start(ap, fmt);
	tap_vline(pass, fmt, ap);
	va_end(ap);
	if (!pass)
	{
		diag("  failed at %s line %d", file, line);
		diag("       got: %s%s%s", got ? "'" : "", got ? got : "NULL", got ? "'" : "");
		diag("  expected: %s%s%s", want ? "'" : "", want ? want : "NULL", want ? "'" : "");
	}
	return pass;
}

static int	done_testing(void) __attribute__((unused));
static int
done_testing(void)
{
	printf("1..%d\n", tap_run);
	if (tap_failed)
		diag("failed %d of %d", tap_failed, tap_run);
	fflush(stdout);
	return tap_failed ? 1 : 0;
}

#define ok(cond, ...) tap_ok(!!(cond), __FILE__, __LINE__, __VA_ARGS__)
#define is_int(got, want, ...) tap_is_int((int64_t) (got), (int64_t) (want), __FILE__, __LINE__, __VA_ARGS__)
#define is_str(got, want, ...) tap_is_str((got), (want), __FILE__, __LINE__, __VA_ARGS__)

#endif							/* OFS_TAP_H */
