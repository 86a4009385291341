/*
 * A stand-in for libnvidia-ml.so.1: the real NVML C signatures and struct layouts (copied from nvml.h),
 * answering from a key=value state file that tests rewrite while the library is loaded. The agent's
 * koffi bindings are the code under test, so everything an ABI mistake could break (struct padding,
 * versioned struct sizes, out-parameter types, the INSUFFICIENT_SIZE dance) is real here.
 *
 * The state file's path is read from FAKE_NVML_STATE once; the file is re-parsed whenever its inode,
 * size or mtime changes, so writing a new file and renaming it over the old one is picked up by the
 * next call. A missing file means "one default GPU". Keys are listed in test/helpers/fake-nvml.ts.
 *
 * Build variants leave symbols out on purpose, so the bindings' fallbacks are exercised:
 *   (none)                 a current driver: every versioned symbol plus the deprecated ones
 *   -DFAKE_NVML_LEGACY     an old driver: no _v2 memory, no _v2/_v3 processes, no clock *event* reasons,
 *                          no nvmlInit_v2/_v2 enumeration, no TemperatureV, no PciInfo_v3, no MIG,
 *                          only the v1 event wait
 *   -DFAKE_NVML_MINIMAL    init, enumeration, name, uuid, v1 memory and nvmlErrorString only
 */
#define _GNU_SOURCE
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#if defined(FAKE_NVML_MINIMAL)
#define FAKE_NVML_LEGACY 1
#define NO_OPTIONAL_READINGS 1
#define NO_EVENTS 1
#endif

#if defined(FAKE_NVML_LEGACY)
#define NO_INIT_V2 1
#define NO_MEMORY_V2 1
#define NO_PROCESSES_V2 1
#define NO_PROCESSES_V3 1
#define NO_CLOCKS_EVENT_REASONS 1
#define NO_TEMPERATURE_V 1
#define NO_PCI_V3 1
#define NO_MIG 1
#define NO_EVENT_WAIT_V2 1
#define NO_CUDA_V2 1
#endif

#define EXPORT __attribute__((visibility("default")))

/* ---- nvml.h types, as the real header declares them ---- */

typedef int nvmlReturn_t;
enum {
  NVML_SUCCESS = 0,
  NVML_ERROR_UNINITIALIZED = 1,
  NVML_ERROR_INVALID_ARGUMENT = 2,
  NVML_ERROR_NOT_SUPPORTED = 3,
  NVML_ERROR_NO_PERMISSION = 4,
  NVML_ERROR_NOT_FOUND = 6,
  NVML_ERROR_INSUFFICIENT_SIZE = 7,
  NVML_ERROR_DRIVER_NOT_LOADED = 9,
  NVML_ERROR_TIMEOUT = 10,
  NVML_ERROR_GPU_IS_LOST = 15,
  NVML_ERROR_ARGUMENT_VERSION_MISMATCH = 25,
  NVML_ERROR_UNKNOWN = 999,
};

typedef struct nvmlDevice_st *nvmlDevice_t;
typedef struct nvmlEventSet_st *nvmlEventSet_t;

typedef struct nvmlPciInfo_st {
  char busIdLegacy[16];
  unsigned int domain;
  unsigned int bus;
  unsigned int device;
  unsigned int pciDeviceId;
  unsigned int pciSubSystemId;
  char busId[32];
} nvmlPciInfo_t;

typedef struct nvmlUtilization_st {
  unsigned int gpu;
  unsigned int memory;
} nvmlUtilization_t;

typedef struct nvmlMemory_st {
  unsigned long long total;
  unsigned long long free;
  unsigned long long used;
} nvmlMemory_t;

typedef struct nvmlMemory_v2_st {
  unsigned int version;
  unsigned long long total;
  unsigned long long reserved;
  unsigned long long free;
  unsigned long long used;
} nvmlMemory_v2_t;
#define NVML_STRUCT_VERSION(data, ver) (unsigned int)(sizeof(nvml##data##_v##ver##_t) | (ver << 24U))
#define nvmlMemory_v2 NVML_STRUCT_VERSION(Memory, 2)

typedef struct nvmlProcessInfo_v1_st {
  unsigned int pid;
  unsigned long long usedGpuMemory;
} nvmlProcessInfo_v1_t;

typedef struct nvmlProcessInfo_v2_st {
  unsigned int pid;
  unsigned long long usedGpuMemory;
  unsigned int gpuInstanceId;
  unsigned int computeInstanceId;
} nvmlProcessInfo_v2_t, nvmlProcessInfo_t;

typedef struct {
  unsigned int version;
  int sensorType; /* nvmlTemperatureSensors_t */
  int temperature;
} nvmlTemperature_v1_t;
#define nvmlTemperature_v1 NVML_STRUCT_VERSION(Temperature, 1)

typedef union nvmlValue_st {
  double dVal;
  int siVal;
  unsigned int uiVal;
  unsigned long ulVal;
  unsigned long long ullVal;
  signed long long sllVal;
  unsigned short usVal;
} nvmlValue_t;

typedef struct nvmlFieldValue_st {
  unsigned int fieldId;
  unsigned int scopeId;
  long long timestamp;
  long long latencyUsec;
  int valueType; /* nvmlValueType_t */
  nvmlReturn_t nvmlReturn;
  nvmlValue_t value;
} nvmlFieldValue_t;

typedef struct nvmlEventData_st {
  nvmlDevice_t device;
  unsigned long long eventType;
  unsigned long long eventData;
  unsigned int gpuInstanceId;
  unsigned int computeInstanceId;
} nvmlEventData_t;

#define NVML_VALUE_NOT_AVAILABLE_ULL 0xFFFFFFFFFFFFFFFFULL
#define NVML_INVALID_ID 0xFFFFFFFFU
#define NVML_VALUE_TYPE_UNSIGNED_INT 1
#define NVML_FI_DEV_MEMORY_TEMP 82
#define NVML_TEMPERATURE_GPU 0
#define NVML_CLOCK_GRAPHICS 0
#define NVML_CLOCK_SM 1
#define NVML_CLOCK_MEM 2
#define NVML_MEMORY_ERROR_TYPE_CORRECTED 0
#define NVML_MEMORY_ERROR_TYPE_UNCORRECTED 1
#define NVML_AGGREGATE_ECC 1
#define NVML_PCIE_UTIL_TX_BYTES 0
#define NVML_PCIE_UTIL_RX_BYTES 1
#define nvmlEventTypeXidCriticalError 0x0000000000000008LL

/* ---- the controllable state ---- */

#define MAX_DEVICES 16
#define MAX_MIG 7
#define MAX_PROCS 64
#define MAX_NAMES 64
#define MAX_XIDS 256
#define STR 96

typedef struct {
  unsigned int gi, ci;
  unsigned long long total, used;
  char uuid[STR];
} mig_state;

typedef struct {
  unsigned int pid, gi, ci;
  unsigned long long used;
} proc_state;

typedef struct {
  char name[STR], uuid[STR], bus_id[32], serial[32], vbios[32];
  unsigned long long mem_total, mem_reserved, mem_used;
  unsigned int util_gpu, util_mem, temp, mem_temp, power_mw, power_limit_mw;
  unsigned int clock_sm, clock_mem, max_clock_sm, max_clock_mem;
  unsigned long long reasons, ecc_corrected, ecc_uncorrected, energy_mj;
  unsigned int pstate, fan, pcie_gen, pcie_width, pcie_tx_kbs, pcie_rx_kbs, encoder, decoder;
  unsigned int mig_mode;
  int mig_count;
  mig_state mig[MAX_MIG];
  int proc_count;
  proc_state procs[MAX_PROCS];
  char unsupported[512];
} device_state;

typedef struct {
  int device_count;
  int init_error;
  int query_error;
  int hang;
  unsigned int hang_ms;
  char hang_on[256];
  char hang_marker[512];
  char driver_version[80];
  int cuda_version;
  char unsupported[256];
  int name_count;
  struct {
    unsigned int pid;
    char name[64];
  } names[MAX_NAMES];
  int xid_count;
  struct {
    int device;
    unsigned long long xid;
    unsigned int gi;
  } xids[MAX_XIDS];
  device_state dev[MAX_DEVICES];
} fake_state;

struct nvmlDevice_st {
  int index;
  int mig_slot; /* -1 for a whole GPU */
};

struct nvmlEventSet_st {
  unsigned long long types[MAX_DEVICES];
};

static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
static fake_state st;
static int st_valid;
static struct stat st_stat;
static int init_refs;
static int xid_next; /* index of the next queued XID event to deliver */
static struct nvmlDevice_st gpu_handles[MAX_DEVICES];
static struct nvmlDevice_st mig_handles[MAX_DEVICES][MAX_MIG];

static void defaults(fake_state *s) {
  memset(s, 0, sizeof *s);
  s->device_count = 1;
  strcpy(s->driver_version, "550.54.15");
  s->cuda_version = 12040;
  for (int i = 0; i < MAX_DEVICES; i++) {
    device_state *d = &s->dev[i];
    snprintf(d->name, sizeof d->name, "Fake GPU");
    snprintf(d->uuid, sizeof d->uuid, "GPU-00000000-0000-0000-0000-%012x", i);
    snprintf(d->bus_id, sizeof d->bus_id, "00000000:%02X:00.0", 0x18 + i * 0x10);
    snprintf(d->serial, sizeof d->serial, "13230000000%02d", i);
    snprintf(d->vbios, sizeof d->vbios, "96.00.99.00.01");
    d->mem_total = 16ULL << 30;
    d->mem_reserved = 256ULL << 20;
    d->mem_used = 1ULL << 30;
    d->util_gpu = 10;
    d->util_mem = 5;
    d->temp = 40;
    d->mem_temp = 45;
    d->power_mw = 60000;
    d->power_limit_mw = 300000;
    d->clock_sm = 1410;
    d->clock_mem = 1215;
    d->max_clock_sm = 1980;
    d->max_clock_mem = 1593;
    d->pstate = 0;
    d->fan = 30;
    d->pcie_gen = 4;
    d->pcie_width = 16;
    d->energy_mj = 1000000;
  }
}

static unsigned long long num(const char *v) {
  if (strcmp(v, "na") == 0) return NVML_VALUE_NOT_AVAILABLE_ULL;
  return strtoull(v, NULL, 0);
}

static void copy(char *dst, size_t n, const char *v) {
  snprintf(dst, n, "%s", v);
}

/* `gpuN.migs=gi:ci:total:used:uuid,...` */
static void parse_migs(device_state *d, char *v) {
  d->mig_count = 0;
  for (char *save = NULL, *tok = strtok_r(v, ",", &save); tok && d->mig_count < MAX_MIG;
       tok = strtok_r(NULL, ",", &save)) {
    mig_state *m = &d->mig[d->mig_count++];
    char *f[5] = {0};
    int n = 0;
    for (char *s2 = NULL, *p = strtok_r(tok, ":", &s2); p && n < 5; p = strtok_r(NULL, ":", &s2)) f[n++] = p;
    m->gi = f[0] ? (unsigned)num(f[0]) : 0;
    m->ci = f[1] ? (unsigned)num(f[1]) : 0;
    m->total = f[2] ? num(f[2]) : 0;
    m->used = f[3] ? num(f[3]) : 0;
    copy(m->uuid, sizeof m->uuid, f[4] ? f[4] : "");
  }
}

/* `gpuN.processes=pid:usedBytes[:gi[:ci]],...`; usedBytes `na` is NVML_VALUE_NOT_AVAILABLE */
static void parse_procs(device_state *d, char *v) {
  d->proc_count = 0;
  for (char *save = NULL, *tok = strtok_r(v, ",", &save); tok && d->proc_count < MAX_PROCS;
       tok = strtok_r(NULL, ",", &save)) {
    proc_state *p = &d->procs[d->proc_count++];
    char *f[4] = {0};
    int n = 0;
    for (char *s2 = NULL, *q = strtok_r(tok, ":", &s2); q && n < 4; q = strtok_r(NULL, ":", &s2)) f[n++] = q;
    p->pid = f[0] ? (unsigned)num(f[0]) : 0;
    p->used = f[1] ? num(f[1]) : 0;
    p->gi = f[2] ? (unsigned)num(f[2]) : NVML_INVALID_ID;
    p->ci = f[3] ? (unsigned)num(f[3]) : NVML_INVALID_ID;
  }
}

static void set_device_key(device_state *d, const char *k, char *v) {
#define U(key, field) \
  if (strcmp(k, key) == 0) { d->field = (unsigned)num(v); return; }
#define ULL(key, field) \
  if (strcmp(k, key) == 0) { d->field = num(v); return; }
#define S(key, field) \
  if (strcmp(k, key) == 0) { copy(d->field, sizeof d->field, v); return; }
  S("name", name) S("uuid", uuid) S("bus_id", bus_id) S("serial", serial) S("vbios", vbios)
  ULL("memory_total", mem_total) ULL("memory_reserved", mem_reserved) ULL("memory_used", mem_used)
  U("util_gpu", util_gpu) U("util_memory", util_mem) U("temperature", temp) U("memory_temperature", mem_temp)
  U("power_mw", power_mw) U("power_limit_mw", power_limit_mw)
  U("clock_sm", clock_sm) U("clock_mem", clock_mem) U("max_clock_sm", max_clock_sm) U("max_clock_mem", max_clock_mem)
  ULL("clock_reasons", reasons) ULL("ecc_corrected", ecc_corrected) ULL("ecc_uncorrected", ecc_uncorrected)
  ULL("energy_mj", energy_mj) U("pstate", pstate) U("fan", fan) U("pcie_gen", pcie_gen) U("pcie_width", pcie_width)
  U("pcie_tx_kbs", pcie_tx_kbs) U("pcie_rx_kbs", pcie_rx_kbs) U("encoder", encoder) U("decoder", decoder)
  U("mig_mode", mig_mode) S("unsupported", unsupported)
#undef U
#undef ULL
#undef S
  if (strcmp(k, "migs") == 0) parse_migs(d, v);
  else if (strcmp(k, "processes") == 0) parse_procs(d, v);
}

static void set_key(fake_state *s, const char *k, char *v) {
  if (strncmp(k, "gpu", 3) == 0 && k[3] >= '0' && k[3] <= '9') {
    char *dot = NULL;
    long i = strtol(k + 3, &dot, 10);
    if (dot && *dot == '.' && i >= 0 && i < MAX_DEVICES) set_device_key(&s->dev[i], dot + 1, v);
    return;
  }
  if (strcmp(k, "device_count") == 0) s->device_count = (int)num(v);
  else if (strcmp(k, "init_error") == 0) s->init_error = (int)num(v);
  else if (strcmp(k, "query_error") == 0) s->query_error = (int)num(v);
  else if (strcmp(k, "hang") == 0) s->hang = (int)num(v);
  else if (strcmp(k, "hang_ms") == 0) s->hang_ms = (unsigned)num(v);
  else if (strcmp(k, "hang_on") == 0) copy(s->hang_on, sizeof s->hang_on, v);
  else if (strcmp(k, "hang_marker") == 0) copy(s->hang_marker, sizeof s->hang_marker, v);
  else if (strcmp(k, "driver_version") == 0) copy(s->driver_version, sizeof s->driver_version, v);
  else if (strcmp(k, "cuda_version") == 0) s->cuda_version = (int)num(v);
  else if (strcmp(k, "unsupported") == 0) copy(s->unsupported, sizeof s->unsupported, v);
  else if (strcmp(k, "process_names") == 0) {
    /* `pid:name,...` */
    s->name_count = 0;
    for (char *save = NULL, *tok = strtok_r(v, ",", &save); tok && s->name_count < MAX_NAMES;
         tok = strtok_r(NULL, ",", &save)) {
      char *colon = strchr(tok, ':');
      if (!colon) continue;
      *colon = 0;
      s->names[s->name_count].pid = (unsigned)num(tok);
      copy(s->names[s->name_count].name, sizeof s->names[0].name, colon + 1);
      s->name_count++;
    }
  } else if (strcmp(k, "xid_events") == 0) {
    /* `device:xid[:gpuInstanceId],...`, delivered in order, each once */
    s->xid_count = 0;
    for (char *save = NULL, *tok = strtok_r(v, ",", &save); tok && s->xid_count < MAX_XIDS;
         tok = strtok_r(NULL, ",", &save)) {
      char *f[3] = {0};
      int n = 0;
      for (char *s2 = NULL, *q = strtok_r(tok, ":", &s2); q && n < 3; q = strtok_r(NULL, ":", &s2)) f[n++] = q;
      if (n < 2) continue;
      s->xids[s->xid_count].device = (int)num(f[0]);
      s->xids[s->xid_count].xid = num(f[1]);
      s->xids[s->xid_count].gi = f[2] ? (unsigned)num(f[2]) : NVML_INVALID_ID;
      s->xid_count++;
    }
  }
}

static pthread_once_t env_once = PTHREAD_ONCE_INIT;
static const char *env_path;
static void read_env(void) { env_path = getenv("FAKE_NVML_STATE"); }

/* Call with `mu` held. Re-parses the state file when it changed. */
static void refresh_locked(void) {
  pthread_once(&env_once, read_env);
  struct stat now;
  int have = env_path && stat(env_path, &now) == 0;
  if (st_valid && have && now.st_ino == st_stat.st_ino && now.st_size == st_stat.st_size &&
      now.st_mtim.tv_sec == st_stat.st_mtim.tv_sec && now.st_mtim.tv_nsec == st_stat.st_mtim.tv_nsec) {
    return;
  }
  if (st_valid && !have && st_stat.st_ino == 0) return;
  static fake_state next;
  defaults(&next);
  if (have) {
    FILE *f = fopen(env_path, "r");
    if (f) {
      char line[4096];
      while (fgets(line, sizeof line, f)) {
        line[strcspn(line, "\r\n")] = 0;
        if (line[0] == '#' || line[0] == 0) continue;
        char *eq = strchr(line, '=');
        if (!eq) continue;
        *eq = 0;
        set_key(&next, line, eq + 1);
      }
      fclose(f);
    }
    st_stat = now;
  } else {
    memset(&st_stat, 0, sizeof st_stat);
  }
  if (next.device_count > MAX_DEVICES) next.device_count = MAX_DEVICES;
  if (next.xid_count < xid_next) xid_next = 0; /* a shorter queue starts over */
  st = next;
  st_valid = 1;
}

static int has_token(const char *list, const char *token) {
  size_t n = strlen(token);
  for (const char *p = list; *p;) {
    const char *end = strchr(p, ',');
    size_t len = end ? (size_t)(end - p) : strlen(p);
    if (len == n && strncmp(p, token, n) == 0) return 1;
    if (!end) break;
    p = end + 1;
  }
  return 0;
}

static void sleep_ms(unsigned ms) {
  struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
  while (nanosleep(&ts, &ts) == -1 && errno == EINTR) {
  }
}

static long long mono_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/*
 * `hang=1` blocks every query named in `hang_on` (all queries when it is empty) until the key is
 * cleared, the way a wedged driver holds a thread; `hang_ms=N` delays each such call by N ms instead.
 * Each call that starts to hang appends its name to the `hang_marker` file, so a test can wait until
 * a thread is really stuck rather than guess how long that takes. A hang gives up after ten minutes
 * so a broken test cannot keep CI waiting for ever.
 */
static void maybe_hang(const char *fn) {
  long long started = mono_ms();
  int marked = 0;
  for (;;) {
    pthread_mutex_lock(&mu);
    refresh_locked();
    int applies = st.hang_on[0] == 0 || has_token(st.hang_on, fn);
    int hang = applies && st.hang;
    unsigned delay = applies ? st.hang_ms : 0;
    if (hang && !marked && st.hang_marker[0]) {
      FILE *f = fopen(st.hang_marker, "a");
      if (f) {
        fprintf(f, "%s\n", fn);
        fclose(f);
      }
      marked = 1;
    }
    pthread_mutex_unlock(&mu);
    if (!hang) {
      if (delay) sleep_ms(delay);
      return;
    }
    if (mono_ms() - started > 600000) return;
    sleep_ms(5);
  }
}

/* Common prologue: refresh, check init, resolve the device. Returns with `mu` held on success. */
static nvmlReturn_t enter(const char *fn) {
  maybe_hang(fn);
  pthread_mutex_lock(&mu);
  refresh_locked();
  if (init_refs <= 0) {
    pthread_mutex_unlock(&mu);
    return NVML_ERROR_UNINITIALIZED;
  }
  /* `query_error=N`: every query after a good init fails with N, as when the driver is unloaded. */
  if (st.query_error) {
    nvmlReturn_t r = st.query_error;
    pthread_mutex_unlock(&mu);
    return r;
  }
  return NVML_SUCCESS;
}

static nvmlReturn_t enter_device(const char *fn, nvmlDevice_t h, const char *field, device_state **d,
                                 mig_state **m) {
  nvmlReturn_t r = enter(fn);
  if (r != NVML_SUCCESS) return r;
  if (!h || h->index < 0 || h->index >= st.device_count) {
    pthread_mutex_unlock(&mu);
    return NVML_ERROR_INVALID_ARGUMENT;
  }
  device_state *dev = &st.dev[h->index];
  if (h->mig_slot >= 0 && (!dev->mig_mode || h->mig_slot >= dev->mig_count)) {
    pthread_mutex_unlock(&mu);
    return NVML_ERROR_INVALID_ARGUMENT;
  }
  if (field && has_token(dev->unsupported, field)) {
    pthread_mutex_unlock(&mu);
    return NVML_ERROR_NOT_SUPPORTED;
  }
  *d = dev;
  if (m) *m = h->mig_slot >= 0 ? &dev->mig[h->mig_slot] : NULL;
  return NVML_SUCCESS;
}

#define DEVICE(fn, field)                                        \
  device_state *d;                                               \
  mig_state *mig;                                                \
  nvmlReturn_t r_ = enter_device(fn, device, field, &d, &mig);  \
  if (r_ != NVML_SUCCESS) return r_;                             \
  (void)mig;

#define DONE(ret)               \
  do {                          \
    pthread_mutex_unlock(&mu);  \
    return (ret);               \
  } while (0)

static nvmlReturn_t copy_string(char *dst, unsigned int length, const char *src) {
  if (!dst || length == 0) return NVML_ERROR_INVALID_ARGUMENT;
  if (strlen(src) + 1 > length) return NVML_ERROR_INSUFFICIENT_SIZE;
  strcpy(dst, src);
  return NVML_SUCCESS;
}

/* ---- exported API ---- */

EXPORT const char *nvmlErrorString(nvmlReturn_t r) {
  switch (r) {
    case NVML_SUCCESS: return "Success";
    case NVML_ERROR_UNINITIALIZED: return "Uninitialized";
    case NVML_ERROR_INVALID_ARGUMENT: return "Invalid Argument";
    case NVML_ERROR_NOT_SUPPORTED: return "Not Supported";
    case NVML_ERROR_NO_PERMISSION: return "Insufficient Permissions";
    case NVML_ERROR_NOT_FOUND: return "Not Found";
    case NVML_ERROR_INSUFFICIENT_SIZE: return "Insufficient Size";
    case NVML_ERROR_DRIVER_NOT_LOADED: return "Driver Not Loaded";
    case NVML_ERROR_TIMEOUT: return "Timeout";
    case NVML_ERROR_GPU_IS_LOST: return "GPU is lost";
    default: return "Unknown Error";
  }
}

static nvmlReturn_t do_init(void) {
  pthread_mutex_lock(&mu);
  refresh_locked();
  if (st.init_error) DONE(st.init_error);
  init_refs++;
  for (int i = 0; i < MAX_DEVICES; i++) {
    gpu_handles[i].index = i;
    gpu_handles[i].mig_slot = -1;
    for (int j = 0; j < MAX_MIG; j++) {
      mig_handles[i][j].index = i;
      mig_handles[i][j].mig_slot = j;
    }
  }
  DONE(NVML_SUCCESS);
}

EXPORT nvmlReturn_t nvmlInit(void) { return do_init(); }
#ifndef NO_INIT_V2
EXPORT nvmlReturn_t nvmlInit_v2(void) { return do_init(); }
#endif

EXPORT nvmlReturn_t nvmlShutdown(void) {
  pthread_mutex_lock(&mu);
  if (init_refs <= 0) DONE(NVML_ERROR_UNINITIALIZED);
  init_refs--;
  DONE(NVML_SUCCESS);
}

static nvmlReturn_t device_count(unsigned int *count) {
  nvmlReturn_t r = enter("nvmlDeviceGetCount");
  if (r) return r;
  if (!count) DONE(NVML_ERROR_INVALID_ARGUMENT);
  *count = (unsigned)st.device_count;
  DONE(NVML_SUCCESS);
}
EXPORT nvmlReturn_t nvmlDeviceGetCount(unsigned int *count) { return device_count(count); }
#ifndef NO_INIT_V2
EXPORT nvmlReturn_t nvmlDeviceGetCount_v2(unsigned int *count) { return device_count(count); }
#endif

static nvmlReturn_t handle_by_index(unsigned int index, nvmlDevice_t *device) {
  nvmlReturn_t r = enter("nvmlDeviceGetHandleByIndex");
  if (r) return r;
  if (!device || index >= (unsigned)st.device_count) DONE(NVML_ERROR_INVALID_ARGUMENT);
  if (has_token(st.dev[index].unsupported, "handle")) DONE(NVML_ERROR_GPU_IS_LOST);
  *device = &gpu_handles[index];
  DONE(NVML_SUCCESS);
}
EXPORT nvmlReturn_t nvmlDeviceGetHandleByIndex(unsigned int index, nvmlDevice_t *device) {
  return handle_by_index(index, device);
}
#ifndef NO_INIT_V2
EXPORT nvmlReturn_t nvmlDeviceGetHandleByIndex_v2(unsigned int index, nvmlDevice_t *device) {
  return handle_by_index(index, device);
}
#endif

EXPORT nvmlReturn_t nvmlDeviceGetName(nvmlDevice_t device, char *name, unsigned int length) {
  DEVICE("nvmlDeviceGetName", "name");
  DONE(copy_string(name, length, d->name));
}

EXPORT nvmlReturn_t nvmlDeviceGetUUID(nvmlDevice_t device, char *uuid, unsigned int length) {
  DEVICE("nvmlDeviceGetUUID", "uuid");
  DONE(copy_string(uuid, length, mig ? mig->uuid : d->uuid));
}

/* v1 counts reserved memory as used, as the real v1 call does. */
EXPORT nvmlReturn_t nvmlDeviceGetMemoryInfo(nvmlDevice_t device, nvmlMemory_t *memory) {
  DEVICE("nvmlDeviceGetMemoryInfo", "memory");
  if (!memory) DONE(NVML_ERROR_INVALID_ARGUMENT);
  if (mig) {
    memory->total = mig->total;
    memory->used = mig->used;
    memory->free = mig->total - mig->used;
  } else {
    memory->total = d->mem_total;
    memory->used = d->mem_used + d->mem_reserved;
    memory->free = d->mem_total - d->mem_used - d->mem_reserved;
  }
  DONE(NVML_SUCCESS);
}

#ifndef NO_MEMORY_V2
EXPORT nvmlReturn_t nvmlDeviceGetMemoryInfo_v2(nvmlDevice_t device, nvmlMemory_v2_t *memory) {
  DEVICE("nvmlDeviceGetMemoryInfo_v2", "memory");
  if (!memory) DONE(NVML_ERROR_INVALID_ARGUMENT);
  if (memory->version != nvmlMemory_v2) DONE(NVML_ERROR_ARGUMENT_VERSION_MISMATCH);
  if (mig) {
    memory->total = mig->total;
    memory->reserved = 0;
    memory->used = mig->used;
    memory->free = mig->total - mig->used;
  } else {
    memory->total = d->mem_total;
    memory->reserved = d->mem_reserved;
    memory->used = d->mem_used;
    memory->free = d->mem_total - d->mem_used - d->mem_reserved;
  }
  DONE(NVML_SUCCESS);
}
#endif

#ifndef NO_OPTIONAL_READINGS

EXPORT nvmlReturn_t nvmlSystemGetDriverVersion(char *version, unsigned int length) {
  nvmlReturn_t r = enter("nvmlSystemGetDriverVersion");
  if (r) return r;
  if (has_token(st.unsupported, "driver_version")) DONE(NVML_ERROR_NOT_SUPPORTED);
  DONE(copy_string(version, length, st.driver_version));
}

static nvmlReturn_t cuda_version(int *v) {
  nvmlReturn_t r = enter("nvmlSystemGetCudaDriverVersion");
  if (r) return r;
  if (!v) DONE(NVML_ERROR_INVALID_ARGUMENT);
  if (has_token(st.unsupported, "cuda_version")) DONE(NVML_ERROR_NOT_SUPPORTED);
  *v = st.cuda_version;
  DONE(NVML_SUCCESS);
}
EXPORT nvmlReturn_t nvmlSystemGetCudaDriverVersion(int *v) { return cuda_version(v); }
#ifndef NO_CUDA_V2
EXPORT nvmlReturn_t nvmlSystemGetCudaDriverVersion_v2(int *v) { return cuda_version(v); }
#endif

EXPORT nvmlReturn_t nvmlSystemGetProcessName(unsigned int pid, char *name, unsigned int length) {
  nvmlReturn_t r = enter("nvmlSystemGetProcessName");
  if (r) return r;
  if (has_token(st.unsupported, "process_name")) DONE(NVML_ERROR_NO_PERMISSION);
  for (int i = 0; i < st.name_count; i++) {
    if (st.names[i].pid == pid) {
      if (!name || length == 0) DONE(NVML_ERROR_INVALID_ARGUMENT);
      /* The real call crops to `length` rather than failing. */
      snprintf(name, length, "%s", st.names[i].name);
      DONE(NVML_SUCCESS);
    }
  }
  DONE(NVML_ERROR_NOT_FOUND);
}


static nvmlReturn_t pci_info(nvmlDevice_t device, nvmlPciInfo_t *pci) {
  DEVICE("nvmlDeviceGetPciInfo", "pci");
  if (!pci || mig) DONE(pci ? NVML_ERROR_NOT_SUPPORTED : NVML_ERROR_INVALID_ARGUMENT);
  unsigned dom = 0, bus = 0, dev = 0, fn = 0;
  sscanf(d->bus_id, "%x:%x:%x.%x", &dom, &bus, &dev, &fn);
  memset(pci, 0, sizeof *pci);
  pci->domain = dom;
  pci->bus = bus;
  pci->device = dev;
  pci->pciDeviceId = 0x233010DE;
  pci->pciSubSystemId = 0x16C110DE;
  snprintf(pci->busIdLegacy, sizeof pci->busIdLegacy, "%04X:%02X:%02X.0", dom & 0xFFFF, bus, dev);
  snprintf(pci->busId, sizeof pci->busId, "%s", d->bus_id);
  DONE(NVML_SUCCESS);
}
EXPORT nvmlReturn_t nvmlDeviceGetPciInfo(nvmlDevice_t device, nvmlPciInfo_t *pci) { return pci_info(device, pci); }
EXPORT nvmlReturn_t nvmlDeviceGetPciInfo_v2(nvmlDevice_t device, nvmlPciInfo_t *pci) {
  return pci_info(device, pci);
}
#ifndef NO_PCI_V3
EXPORT nvmlReturn_t nvmlDeviceGetPciInfo_v3(nvmlDevice_t device, nvmlPciInfo_t *pci) {
  return pci_info(device, pci);
}
#endif

EXPORT nvmlReturn_t nvmlDeviceGetSerial(nvmlDevice_t device, char *serial, unsigned int length) {
  DEVICE("nvmlDeviceGetSerial", "serial");
  DONE(copy_string(serial, length, d->serial));
}

EXPORT nvmlReturn_t nvmlDeviceGetVbiosVersion(nvmlDevice_t device, char *version, unsigned int length) {
  DEVICE("nvmlDeviceGetVbiosVersion", "vbios");
  DONE(copy_string(version, length, d->vbios));
}

EXPORT nvmlReturn_t nvmlDeviceGetUtilizationRates(nvmlDevice_t device, nvmlUtilization_t *u) {
  DEVICE("nvmlDeviceGetUtilizationRates", "utilization");
  /* Under MIG the whole-GPU utilization is not available, as on real hardware. */
  if (!u) DONE(NVML_ERROR_INVALID_ARGUMENT);
  if (d->mig_mode) DONE(NVML_ERROR_NOT_SUPPORTED);
  u->gpu = d->util_gpu;
  u->memory = d->util_mem;
  DONE(NVML_SUCCESS);
}

EXPORT nvmlReturn_t nvmlDeviceGetEncoderUtilization(nvmlDevice_t device, unsigned int *util, unsigned int *period) {
  DEVICE("nvmlDeviceGetEncoderUtilization", "encoder");
  if (!util || !period) DONE(NVML_ERROR_INVALID_ARGUMENT);
  *util = d->encoder;
  *period = 167000;
  DONE(NVML_SUCCESS);
}

EXPORT nvmlReturn_t nvmlDeviceGetDecoderUtilization(nvmlDevice_t device, unsigned int *util, unsigned int *period) {
  DEVICE("nvmlDeviceGetDecoderUtilization", "decoder");
  if (!util || !period) DONE(NVML_ERROR_INVALID_ARGUMENT);
  *util = d->decoder;
  *period = 167000;
  DONE(NVML_SUCCESS);
}

EXPORT nvmlReturn_t nvmlDeviceGetTemperature(nvmlDevice_t device, int sensor, unsigned int *temp) {
  DEVICE("nvmlDeviceGetTemperature", "temperature");
  if (!temp || sensor != NVML_TEMPERATURE_GPU) DONE(NVML_ERROR_INVALID_ARGUMENT);
  *temp = d->temp;
  DONE(NVML_SUCCESS);
}

#ifndef NO_TEMPERATURE_V
EXPORT nvmlReturn_t nvmlDeviceGetTemperatureV(nvmlDevice_t device, nvmlTemperature_v1_t *t) {
  DEVICE("nvmlDeviceGetTemperatureV", "temperature");
  if (!t || t->sensorType != NVML_TEMPERATURE_GPU) DONE(NVML_ERROR_INVALID_ARGUMENT);
  if (t->version != nvmlTemperature_v1) DONE(NVML_ERROR_ARGUMENT_VERSION_MISMATCH);
  t->temperature = (int)d->temp;
  DONE(NVML_SUCCESS);
}
#endif

EXPORT nvmlReturn_t nvmlDeviceGetFieldValues(nvmlDevice_t device, int count, nvmlFieldValue_t *values) {
  DEVICE("nvmlDeviceGetFieldValues", NULL);
  if (!values || count < 0) DONE(NVML_ERROR_INVALID_ARGUMENT);
  for (int i = 0; i < count; i++) {
    nvmlFieldValue_t *v = &values[i];
    v->timestamp = (long long)time(NULL) * 1000000LL;
    v->latencyUsec = 0;
    if (v->fieldId == NVML_FI_DEV_MEMORY_TEMP && !has_token(d->unsupported, "memory_temperature")) {
      v->valueType = NVML_VALUE_TYPE_UNSIGNED_INT;
      v->nvmlReturn = NVML_SUCCESS;
      v->value.ullVal = 0;
      v->value.uiVal = d->mem_temp;
    } else {
      v->nvmlReturn = NVML_ERROR_NOT_SUPPORTED;
    }
  }
  DONE(NVML_SUCCESS);
}

EXPORT nvmlReturn_t nvmlDeviceGetPowerUsage(nvmlDevice_t device, unsigned int *power) {
  DEVICE("nvmlDeviceGetPowerUsage", "power");
  if (!power) DONE(NVML_ERROR_INVALID_ARGUMENT);
  *power = d->power_mw;
  DONE(NVML_SUCCESS);
}

EXPORT nvmlReturn_t nvmlDeviceGetEnforcedPowerLimit(nvmlDevice_t device, unsigned int *limit) {
  DEVICE("nvmlDeviceGetEnforcedPowerLimit", "power_limit");
  if (!limit) DONE(NVML_ERROR_INVALID_ARGUMENT);
  *limit = d->power_limit_mw;
  DONE(NVML_SUCCESS);
}

EXPORT nvmlReturn_t nvmlDeviceGetTotalEnergyConsumption(nvmlDevice_t device, unsigned long long *energy) {
  DEVICE("nvmlDeviceGetTotalEnergyConsumption", "energy");
  if (!energy) DONE(NVML_ERROR_INVALID_ARGUMENT);
  *energy = d->energy_mj;
  DONE(NVML_SUCCESS);
}

EXPORT nvmlReturn_t nvmlDeviceGetClockInfo(nvmlDevice_t device, int type, unsigned int *clock) {
  DEVICE("nvmlDeviceGetClockInfo", "clocks");
  if (!clock) DONE(NVML_ERROR_INVALID_ARGUMENT);
  if (type == NVML_CLOCK_SM || type == NVML_CLOCK_GRAPHICS) *clock = d->clock_sm;
  else if (type == NVML_CLOCK_MEM) *clock = d->clock_mem;
  else DONE(NVML_ERROR_NOT_SUPPORTED);
  DONE(NVML_SUCCESS);
}

EXPORT nvmlReturn_t nvmlDeviceGetMaxClockInfo(nvmlDevice_t device, int type, unsigned int *clock) {
  DEVICE("nvmlDeviceGetMaxClockInfo", "max_clocks");
  if (!clock) DONE(NVML_ERROR_INVALID_ARGUMENT);
  if (type == NVML_CLOCK_SM || type == NVML_CLOCK_GRAPHICS) *clock = d->max_clock_sm;
  else if (type == NVML_CLOCK_MEM) *clock = d->max_clock_mem;
  else DONE(NVML_ERROR_NOT_SUPPORTED);
  DONE(NVML_SUCCESS);
}

static nvmlReturn_t clock_reasons(nvmlDevice_t device, unsigned long long *reasons, const char *fn) {
  DEVICE(fn, "clock_reasons");
  if (!reasons) DONE(NVML_ERROR_INVALID_ARGUMENT);
  *reasons = d->reasons;
  DONE(NVML_SUCCESS);
}
EXPORT nvmlReturn_t nvmlDeviceGetCurrentClocksThrottleReasons(nvmlDevice_t device, unsigned long long *reasons) {
  return clock_reasons(device, reasons, "nvmlDeviceGetCurrentClocksThrottleReasons");
}
#ifndef NO_CLOCKS_EVENT_REASONS
EXPORT nvmlReturn_t nvmlDeviceGetCurrentClocksEventReasons(nvmlDevice_t device, unsigned long long *reasons) {
  return clock_reasons(device, reasons, "nvmlDeviceGetCurrentClocksEventReasons");
}
#endif

EXPORT nvmlReturn_t nvmlDeviceGetTotalEccErrors(nvmlDevice_t device, int errorType, int counterType,
                                                unsigned long long *count) {
  DEVICE("nvmlDeviceGetTotalEccErrors", "ecc");
  if (!count || counterType != NVML_AGGREGATE_ECC) DONE(NVML_ERROR_INVALID_ARGUMENT);
  if (errorType == NVML_MEMORY_ERROR_TYPE_CORRECTED) *count = d->ecc_corrected;
  else if (errorType == NVML_MEMORY_ERROR_TYPE_UNCORRECTED) *count = d->ecc_uncorrected;
  else DONE(NVML_ERROR_INVALID_ARGUMENT);
  DONE(NVML_SUCCESS);
}

EXPORT nvmlReturn_t nvmlDeviceGetPerformanceState(nvmlDevice_t device, int *pstate) {
  DEVICE("nvmlDeviceGetPerformanceState", "pstate");
  if (!pstate) DONE(NVML_ERROR_INVALID_ARGUMENT);
  *pstate = (int)d->pstate;
  DONE(NVML_SUCCESS);
}

EXPORT nvmlReturn_t nvmlDeviceGetFanSpeed(nvmlDevice_t device, unsigned int *speed) {
  DEVICE("nvmlDeviceGetFanSpeed", "fan");
  if (!speed) DONE(NVML_ERROR_INVALID_ARGUMENT);
  *speed = d->fan;
  DONE(NVML_SUCCESS);
}

EXPORT nvmlReturn_t nvmlDeviceGetCurrPcieLinkGeneration(nvmlDevice_t device, unsigned int *gen) {
  DEVICE("nvmlDeviceGetCurrPcieLinkGeneration", "pcie_link");
  if (!gen) DONE(NVML_ERROR_INVALID_ARGUMENT);
  *gen = d->pcie_gen;
  DONE(NVML_SUCCESS);
}

EXPORT nvmlReturn_t nvmlDeviceGetCurrPcieLinkWidth(nvmlDevice_t device, unsigned int *width) {
  DEVICE("nvmlDeviceGetCurrPcieLinkWidth", "pcie_link");
  if (!width) DONE(NVML_ERROR_INVALID_ARGUMENT);
  *width = d->pcie_width;
  DONE(NVML_SUCCESS);
}

EXPORT nvmlReturn_t nvmlDeviceGetPcieThroughput(nvmlDevice_t device, int counter, unsigned int *value) {
  DEVICE("nvmlDeviceGetPcieThroughput", "pcie_throughput");
  if (!value) DONE(NVML_ERROR_INVALID_ARGUMENT);
  if (counter == NVML_PCIE_UTIL_TX_BYTES) *value = d->pcie_tx_kbs;
  else if (counter == NVML_PCIE_UTIL_RX_BYTES) *value = d->pcie_rx_kbs;
  else DONE(NVML_ERROR_INVALID_ARGUMENT);
  DONE(NVML_SUCCESS);
}

/*
 * The process list answers the NVML way: a NULL or too small array gets INSUFFICIENT_SIZE and the
 * count needed. A whole-GPU handle lists every process; a MIG handle only its GPU instance's.
 */
static nvmlReturn_t processes(nvmlDevice_t device, unsigned int *count, void *infos, int version) {
  DEVICE("nvmlDeviceGetComputeRunningProcesses", "processes");
  if (!count) DONE(NVML_ERROR_INVALID_ARGUMENT);
  proc_state *list[MAX_PROCS];
  unsigned n = 0;
  for (int i = 0; i < d->proc_count; i++) {
    if (mig && d->procs[i].gi != mig->gi) continue;
    list[n++] = &d->procs[i];
  }
  if (n == 0) {
    *count = 0;
    DONE(NVML_SUCCESS);
  }
  if (!infos || *count < n) {
    *count = n;
    DONE(NVML_ERROR_INSUFFICIENT_SIZE);
  }
  for (unsigned i = 0; i < n; i++) {
    if (version == 1) {
      nvmlProcessInfo_v1_t *p = (nvmlProcessInfo_v1_t *)infos + i;
      p->pid = list[i]->pid;
      p->usedGpuMemory = list[i]->used;
    } else {
      nvmlProcessInfo_t *p = (nvmlProcessInfo_t *)infos + i;
      p->pid = list[i]->pid;
      p->usedGpuMemory = list[i]->used;
      p->gpuInstanceId = list[i]->gi;
      p->computeInstanceId = list[i]->ci;
    }
  }
  *count = n;
  DONE(NVML_SUCCESS);
}
EXPORT nvmlReturn_t nvmlDeviceGetComputeRunningProcesses(nvmlDevice_t device, unsigned int *count,
                                                         nvmlProcessInfo_v1_t *infos) {
  return processes(device, count, infos, 1);
}
#ifndef NO_PROCESSES_V2
EXPORT nvmlReturn_t nvmlDeviceGetComputeRunningProcesses_v2(nvmlDevice_t device, unsigned int *count,
                                                            nvmlProcessInfo_v2_t *infos) {
  return processes(device, count, infos, 2);
}
#endif
#ifndef NO_PROCESSES_V3
EXPORT nvmlReturn_t nvmlDeviceGetComputeRunningProcesses_v3(nvmlDevice_t device, unsigned int *count,
                                                            nvmlProcessInfo_t *infos) {
  return processes(device, count, infos, 3);
}
#endif

#ifndef NO_MIG
EXPORT nvmlReturn_t nvmlDeviceGetMigMode(nvmlDevice_t device, unsigned int *current, unsigned int *pending) {
  DEVICE("nvmlDeviceGetMigMode", "mig");
  if (!current || !pending || mig) DONE(NVML_ERROR_INVALID_ARGUMENT);
  *current = d->mig_mode;
  *pending = d->mig_mode;
  DONE(NVML_SUCCESS);
}

EXPORT nvmlReturn_t nvmlDeviceGetMaxMigDeviceCount(nvmlDevice_t device, unsigned int *count) {
  DEVICE("nvmlDeviceGetMaxMigDeviceCount", "mig");
  if (!count) DONE(NVML_ERROR_INVALID_ARGUMENT);
  *count = MAX_MIG;
  DONE(NVML_SUCCESS);
}

EXPORT nvmlReturn_t nvmlDeviceGetMigDeviceHandleByIndex(nvmlDevice_t device, unsigned int index,
                                                        nvmlDevice_t *migDevice) {
  DEVICE("nvmlDeviceGetMigDeviceHandleByIndex", "mig");
  if (!migDevice || mig) DONE(NVML_ERROR_INVALID_ARGUMENT);
  if (!d->mig_mode) DONE(NVML_ERROR_INVALID_ARGUMENT);
  if (index >= (unsigned)d->mig_count) DONE(NVML_ERROR_NOT_FOUND);
  *migDevice = &mig_handles[device->index][index];
  DONE(NVML_SUCCESS);
}

EXPORT nvmlReturn_t nvmlDeviceGetGpuInstanceId(nvmlDevice_t device, unsigned int *id) {
  DEVICE("nvmlDeviceGetGpuInstanceId", NULL);
  if (!id) DONE(NVML_ERROR_INVALID_ARGUMENT);
  if (!mig) DONE(NVML_ERROR_NOT_SUPPORTED);
  *id = mig->gi;
  DONE(NVML_SUCCESS);
}

EXPORT nvmlReturn_t nvmlDeviceGetComputeInstanceId(nvmlDevice_t device, unsigned int *id) {
  DEVICE("nvmlDeviceGetComputeInstanceId", NULL);
  if (!id) DONE(NVML_ERROR_INVALID_ARGUMENT);
  if (!mig) DONE(NVML_ERROR_NOT_SUPPORTED);
  *id = mig->ci;
  DONE(NVML_SUCCESS);
}
#endif /* NO_MIG */

#endif /* NO_OPTIONAL_READINGS */

#ifndef NO_EVENTS
EXPORT nvmlReturn_t nvmlEventSetCreate(nvmlEventSet_t *set) {
  pthread_mutex_lock(&mu);
  refresh_locked();
  if (init_refs <= 0) DONE(NVML_ERROR_UNINITIALIZED);
  if (!set) DONE(NVML_ERROR_INVALID_ARGUMENT);
  *set = calloc(1, sizeof(struct nvmlEventSet_st));
  DONE(*set ? NVML_SUCCESS : NVML_ERROR_UNKNOWN);
}

EXPORT nvmlReturn_t nvmlEventSetFree(nvmlEventSet_t set) {
  free(set);
  return NVML_SUCCESS;
}

EXPORT nvmlReturn_t nvmlDeviceRegisterEvents(nvmlDevice_t device, unsigned long long types, nvmlEventSet_t set) {
  pthread_mutex_lock(&mu);
  refresh_locked();
  if (init_refs <= 0) DONE(NVML_ERROR_UNINITIALIZED);
  if (!set || !device || device->mig_slot >= 0 || device->index >= st.device_count) {
    DONE(NVML_ERROR_INVALID_ARGUMENT);
  }
  if (has_token(st.dev[device->index].unsupported, "events")) DONE(NVML_ERROR_NOT_SUPPORTED);
  set->types[device->index] |= types;
  DONE(NVML_SUCCESS);
}

/* Delivers the next queued XID event for a device registered in `set`; waits up to `timeoutms`. */
static nvmlReturn_t event_wait(nvmlEventSet_t set, nvmlEventData_t *data, unsigned int timeoutms, int v2) {
  if (!set || !data) return NVML_ERROR_INVALID_ARGUMENT;
  long long deadline = mono_ms() + timeoutms;
  for (;;) {
    pthread_mutex_lock(&mu);
    refresh_locked();
    if (init_refs <= 0) DONE(NVML_ERROR_UNINITIALIZED);
    while (xid_next < st.xid_count) {
      int dev = st.xids[xid_next].device;
      unsigned long long xid = st.xids[xid_next].xid;
      unsigned gi = st.xids[xid_next].gi;
      xid_next++;
      if (dev < 0 || dev >= st.device_count || !(set->types[dev] & nvmlEventTypeXidCriticalError)) continue;
      data->device = &gpu_handles[dev];
      data->eventType = nvmlEventTypeXidCriticalError;
      data->eventData = xid;
      if (v2) {
        data->gpuInstanceId = gi;
        data->computeInstanceId = NVML_INVALID_ID;
      }
      DONE(NVML_SUCCESS);
    }
    pthread_mutex_unlock(&mu);
    long long left = deadline - mono_ms();
    if (left <= 0) return NVML_ERROR_TIMEOUT;
    sleep_ms(left < 10 ? (unsigned)left : 10);
  }
}
EXPORT nvmlReturn_t nvmlEventSetWait(nvmlEventSet_t set, nvmlEventData_t *data, unsigned int timeoutms) {
  return event_wait(set, data, timeoutms, 0);
}
#ifndef NO_EVENT_WAIT_V2
EXPORT nvmlReturn_t nvmlEventSetWait_v2(nvmlEventSet_t set, nvmlEventData_t *data, unsigned int timeoutms) {
  return event_wait(set, data, timeoutms, 1);
}
#endif
#endif /* NO_EVENTS */
