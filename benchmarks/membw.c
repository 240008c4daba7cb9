/* STREAM-like memory bandwidth probe for benchmarks/machine.py: read (integer sum, so the compiler can vectorise
   without reassociating floats) and copy, each thread on its own 256 MiB slice, best of several passes.
   Usage: membw N_THREADS [MIB_PER_THREAD]   prints: read_GBps copy_GBps (copy counts bytes read + written). */
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

typedef struct {
    uint64_t *a, *b;
    size_t n;
    int mode; /* 0 read, 1 copy */
    uint64_t sink;
    pthread_barrier_t *bar;
    double t0, t1;
} job_t;

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec * 1e-9;
}

static void *work(void *p) {
    job_t *j = (job_t *)p;
    pthread_barrier_wait(j->bar);
    j->t0 = now();
    if (j->mode == 0) {
        uint64_t s0 = 0, s1 = 0, s2 = 0, s3 = 0;
        for (size_t i = 0; i + 4 <= j->n; i += 4) {
            s0 += j->a[i]; s1 += j->a[i + 1]; s2 += j->a[i + 2]; s3 += j->a[i + 3];
        }
        j->sink += s0 + s1 + s2 + s3;
    } else {
        for (size_t i = 0; i < j->n; ++i) j->b[i] = j->a[i];
    }
    j->t1 = now();
    return NULL;
}

int main(int argc, char **argv) {
    int nt = argc > 1 ? atoi(argv[1]) : 1;
    size_t mib = argc > 2 ? (size_t)atol(argv[2]) : 256;
    if (nt < 1 || nt > 256 || mib < 1) return 2;
    size_t n = mib * 1024 * 1024 / sizeof(uint64_t);
    job_t *jobs = calloc(nt, sizeof(job_t));
    pthread_t *th = calloc(nt, sizeof(pthread_t));
    pthread_barrier_t bar;
    for (int t = 0; t < nt; ++t) {
        jobs[t].a = malloc(n * sizeof(uint64_t));
        jobs[t].b = malloc(n * sizeof(uint64_t));
        if (!jobs[t].a || !jobs[t].b) return 3;
        for (size_t i = 0; i < n; ++i) jobs[t].a[i] = i * 2654435761u;
        memset(jobs[t].b, 1, n * sizeof(uint64_t));
        jobs[t].n = n;
    }
    double best[2] = {0, 0};
    for (int mode = 0; mode < 2; ++mode) {
        for (int rep = 0; rep < 5; ++rep) {
            pthread_barrier_init(&bar, NULL, nt);
            for (int t = 0; t < nt; ++t) {
                jobs[t].mode = mode;
                jobs[t].bar = &bar;
                pthread_create(&th[t], NULL, work, &jobs[t]);
            }
            double t0 = 1e300, t1 = 0;
            for (int t = 0; t < nt; ++t) {
                pthread_join(th[t], NULL);
                if (jobs[t].t0 < t0) t0 = jobs[t].t0;
                if (jobs[t].t1 > t1) t1 = jobs[t].t1;
            }
            pthread_barrier_destroy(&bar);
            double bytes = (double)nt * n * sizeof(uint64_t) * (mode == 0 ? 1 : 2);
            double gbps = bytes / (t1 - t0) / 1e9;
            if (gbps > best[mode]) best[mode] = gbps;
        }
    }
    uint64_t sink = 0;
    for (int t = 0; t < nt; ++t) sink += jobs[t].sink;
    printf("%.3f %.3f %llu\n", best[0], best[1], (unsigned long long)(sink & 1));
    return 0;
}
