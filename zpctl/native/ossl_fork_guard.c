/*
 * zpctl's OpenSSL fork guard for Kamailio 5.6: each forked process gets OpenSSL thread
 * state of its own.
 *
 * Why: Kamailio's tls module points OpenSSL's allocator at Kamailio's shared memory and
 * initialises OpenSSL 3 in the main process, which then forks its workers.  A child
 * inherits the main thread's thread-local values, pointers into that shared memory (the
 * error queue first of all), so every worker uses the same OpenSSL objects at once: double
 * frees logged from tls_init.c ser_free, then a worker dies of SIGSEGV and takes Kamailio
 * with it (kamailio issues 3695 and 3791: Debian 12's 5.6.3).  Kamailio 5.7.5 and later
 * avoid it with tls_threads_mode; 5.6 has nothing of the kind.
 *
 * What: loaded with LD_PRELOAD, this library notes every thread-local key that libcrypto
 * creates (pthread_key_create called from inside libcrypto) and, in every child right
 * after fork(), sets those keys' values to NULL.  OpenSSL then creates fresh state in that
 * process on first use.  The state inherited from the parent is left alone, never freed:
 * freeing it is exactly the bug.  Cost: a few KB of shared memory per process.
 *
 * Nothing is printed; a process runs with the guard when this library is in its maps.
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <pthread.h>
#include <string.h>

#define GUARD_MAX_KEYS 64

static pthread_key_t guard_keys[GUARD_MAX_KEYS];
static int guard_nkeys;
static int (*guard_real_key_create)(pthread_key_t *, void (*)(void *));

static int guard_in_libcrypto(const void *address)
{
    Dl_info info;

    return dladdr(address, &info) != 0 && info.dli_fname != NULL
           && strstr(info.dli_fname, "libcrypto") != NULL;
}

int pthread_key_create(pthread_key_t *key, void (*destructor)(void *))
{
    int rc;

    if (guard_real_key_create == NULL)
        guard_real_key_create = (int (*)(pthread_key_t *, void (*)(void *)))
            dlsym(RTLD_NEXT, "pthread_key_create");
    rc = guard_real_key_create(key, destructor);
    if (rc == 0 && guard_nkeys < GUARD_MAX_KEYS
        && guard_in_libcrypto(__builtin_return_address(0)))
        guard_keys[guard_nkeys++] = *key;
    return rc;
}

static void guard_child_after_fork(void)
{
    int i;

    for (i = 0; i < guard_nkeys; i++)
        pthread_setspecific(guard_keys[i], NULL);
}

__attribute__((constructor)) static void guard_init(void)
{
    pthread_atfork(NULL, NULL, guard_child_after_fork);
}
