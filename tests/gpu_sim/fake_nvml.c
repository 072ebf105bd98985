/*
 * fake_nvml.c - a stand-in for libnvidia-ml.so.1 that answers the NVML calls
 * nvidia-ml-py makes for discovery, from a JSON file describing the host's GPUs.
 *
 * Test harness only: installed into test hosts so the real discovery code
 * (pynvml -> ctypes -> libnvidia-ml.so.1) runs unchanged without a GPU.
 *
 * Spec path: $NVML_SIM_SPEC, else /etc/nvidia-sim/gpus.json. Re-read at every
 * nvmlInit, so a test can change the host's GPUs between two runs.
 * Schema: see tests/gpu_sim/README.md.
 */
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef int nvmlReturn_t;
enum {
    NVML_SUCCESS = 0, NVML_ERROR_UNINITIALIZED = 1, NVML_ERROR_INVALID_ARGUMENT = 2,
    NVML_ERROR_NOT_SUPPORTED = 3, NVML_ERROR_NO_PERMISSION = 4, NVML_ERROR_ALREADY_INITIALIZED = 5,
    NVML_ERROR_NOT_FOUND = 6, NVML_ERROR_INSUFFICIENT_SIZE = 7, NVML_ERROR_DRIVER_NOT_LOADED = 9,
    NVML_ERROR_GPU_IS_LOST = 15, NVML_ERROR_LIB_RM_VERSION_MISMATCH = 18, NVML_ERROR_UNKNOWN = 999,
};

/* ---------- a small JSON reader: enough for the spec files ---------- */
typedef enum { J_NULL, J_BOOL, J_NUM, J_STR, J_ARR, J_OBJ } jtype;
typedef struct jval {
    jtype type;
    double num;
    int boolean;
    char *str;
    struct jval **items;  /* array items or object values */
    char **keys;          /* object keys */
    int n;
} jval;

static const char *jp;
static int jerr;

static void jskip(void) { while (*jp && isspace((unsigned char)*jp)) jp++; }

static jval *jnew(jtype t) { jval *v = calloc(1, sizeof *v); v->type = t; return v; }

static jval *jparse(void);

static char *jstring(void) {
    size_t cap = 64, len = 0;
    char *s = malloc(cap);
    jp++; /* opening quote */
    while (*jp && *jp != '"') {
        char c = *jp++;
        if (c == '\\') {
            c = *jp++;
            switch (c) {
            case 'n': c = '\n'; break;
            case 't': c = '\t'; break;
            case 'u': jp += 4; c = '?'; break; /* the spec files are ASCII */
            default: break;                    /* \" \\ \/ */
            }
        }
        if (len + 2 > cap) s = realloc(s, cap *= 2);
        s[len++] = c;
    }
    if (*jp != '"') jerr = 1; else jp++;
    s[len] = 0;
    return s;
}

static jval *jparse(void) {
    jskip();
    jval *v;
    if (*jp == '{' || *jp == '[') {
        int obj = *jp == '{';
        char close = obj ? '}' : ']';
        v = jnew(obj ? J_OBJ : J_ARR);
        jp++;
        jskip();
        while (*jp && *jp != close && !jerr) {
            v->items = realloc(v->items, sizeof(jval *) * (v->n + 1));
            if (obj) {
                v->keys = realloc(v->keys, sizeof(char *) * (v->n + 1));
                jskip();
                if (*jp != '"') { jerr = 1; break; }
                v->keys[v->n] = jstring();
                jskip();
                if (*jp++ != ':') { jerr = 1; break; }
            }
            v->items[v->n++] = jparse();
            jskip();
            if (*jp == ',') jp++;
            jskip();
        }
        if (*jp != close) jerr = 1; else jp++;
        return v;
    }
    if (*jp == '"') { v = jnew(J_STR); v->str = jstring(); return v; }
    if (!strncmp(jp, "true", 4)) { jp += 4; v = jnew(J_BOOL); v->boolean = 1; return v; }
    if (!strncmp(jp, "false", 5)) { jp += 5; return jnew(J_BOOL); }
    if (!strncmp(jp, "null", 4)) { jp += 4; return jnew(J_NULL); }
    char *end;
    v = jnew(J_NUM);
    v->num = strtod(jp, &end);
    if (end == jp) jerr = 1;
    jp = end;
    return v;
}

static jval *jget(const jval *o, const char *key) {
    if (!o || o->type != J_OBJ) return NULL;
    for (int i = 0; i < o->n; i++)
        if (!strcmp(o->keys[i], key)) return o->items[i];
    return NULL;
}
static const char *jstr(const jval *o, const char *key, const char *dflt) {
    jval *v = jget(o, key);
    return v && v->type == J_STR ? v->str : dflt;
}
static unsigned long long jnum(const jval *o, const char *key, unsigned long long dflt) {
    jval *v = jget(o, key);
    return v && v->type == J_NUM ? (unsigned long long)v->num : dflt;
}
static int jbool(const jval *o, const char *key) {
    jval *v = jget(o, key);
    return v && v->type == J_BOOL && v->boolean;
}

/* ---------- the simulated devices ---------- */
#define MAX_GPUS 64
#define MAX_MIG 7

struct nvmlDevice_st {
    const jval *spec;
    int is_mig;
    unsigned index;          /* GPU index, or MIG slot on its parent */
    struct nvmlDevice_st *parent;
    struct nvmlDevice_st *mig[MAX_MIG];
    int mig_count;
};
typedef struct nvmlDevice_st *nvmlDevice_t;

static struct nvmlDevice_st gpus[MAX_GPUS];
static struct nvmlDevice_st migs[MAX_GPUS * MAX_MIG];
static unsigned gpu_count;
static int initialised;
static jval *root;

typedef struct { unsigned long long total, free, used; } nvmlMemory_t;
typedef struct { unsigned version; unsigned long long total, reserved, free, used; } nvmlMemory_v2_t;
typedef struct {
    char busIdLegacy[16];
    unsigned domain, bus, device, pciDeviceId, pciSubSystemId;
    char busId[32];
} nvmlPciInfo_t;

static const char *spec_path(void) {
    const char *p = getenv("NVML_SIM_SPEC");
    return p && *p ? p : "/etc/nvidia-sim/gpus.json";
}

static nvmlReturn_t load_spec(void) {
    FILE *f = fopen(spec_path(), "r");
    if (!f) return NVML_ERROR_DRIVER_NOT_LOADED; /* no spec = no driver on this host */
    fseek(f, 0, SEEK_END);
    long size = ftell(f);
    rewind(f);
    char *text = calloc(1, size + 1);
    if (fread(text, 1, size, f) != (size_t)size) { fclose(f); free(text); return NVML_ERROR_UNKNOWN; }
    fclose(f);
    jp = text;
    jerr = 0;
    root = jparse(); /* leaked on purpose: handles point into it until the process ends */
    if (jerr || root->type != J_OBJ) return NVML_ERROR_UNKNOWN;
    jval *init_error = jget(root, "init_error");
    if (init_error && init_error->type == J_NUM) return (nvmlReturn_t)init_error->num;

    memset(gpus, 0, sizeof gpus);
    memset(migs, 0, sizeof migs);
    jval *list = jget(root, "gpus");
    gpu_count = 0;
    unsigned nmig = 0;
    for (int i = 0; list && list->type == J_ARR && i < list->n && i < MAX_GPUS; i++) {
        struct nvmlDevice_st *g = &gpus[gpu_count];
        g->spec = list->items[i];
        g->index = gpu_count++;
        jval *ml = jget(g->spec, "mig_devices");
        for (int m = 0; jbool(g->spec, "mig_mode") && ml && ml->type == J_ARR && m < ml->n && m < MAX_MIG; m++) {
            struct nvmlDevice_st *d = &migs[nmig++];
            d->spec = ml->items[m];
            d->is_mig = 1;
            d->index = m;
            d->parent = g;
            g->mig[g->mig_count++] = d;
        }
    }
    return NVML_SUCCESS;
}

#define REQUIRE_INIT() do { if (!initialised) return NVML_ERROR_UNINITIALIZED; } while (0)
#define REQUIRE_DEV(d) do { REQUIRE_INIT(); if (!(d)) return NVML_ERROR_INVALID_ARGUMENT; } while (0)

static nvmlReturn_t copy_out(const char *src, char *dst, unsigned len) {
    if (!dst) return NVML_ERROR_INVALID_ARGUMENT;
    if (strlen(src) + 1 > len) return NVML_ERROR_INSUFFICIENT_SIZE;
    strcpy(dst, src);
    return NVML_SUCCESS;
}

/* ---------- the NVML API ---------- */
nvmlReturn_t nvmlInitWithFlags(unsigned flags) {
    (void)flags;
    if (initialised) { initialised++; return NVML_SUCCESS; } /* NVML counts inits */
    nvmlReturn_t r = load_spec();
    if (r == NVML_SUCCESS) initialised = 1;
    return r;
}
nvmlReturn_t nvmlInit_v2(void) { return nvmlInitWithFlags(0); }
nvmlReturn_t nvmlInit(void) { return nvmlInitWithFlags(0); }

nvmlReturn_t nvmlShutdown(void) {
    REQUIRE_INIT();
    initialised--;
    return NVML_SUCCESS;
}

const char *nvmlErrorString(nvmlReturn_t r) {
    switch (r) {
    case NVML_SUCCESS: return "Success";
    case NVML_ERROR_UNINITIALIZED: return "Uninitialized";
    case NVML_ERROR_INVALID_ARGUMENT: return "Invalid Argument";
    case NVML_ERROR_NOT_SUPPORTED: return "Not Supported";
    case NVML_ERROR_NO_PERMISSION: return "Insufficient Permissions";
    case NVML_ERROR_ALREADY_INITIALIZED: return "Already Initialized";
    case NVML_ERROR_NOT_FOUND: return "Not Found";
    case NVML_ERROR_INSUFFICIENT_SIZE: return "Insufficient Size";
    case NVML_ERROR_DRIVER_NOT_LOADED: return "Driver Not Loaded";
    case NVML_ERROR_GPU_IS_LOST: return "GPU is lost";
    case NVML_ERROR_LIB_RM_VERSION_MISMATCH: return "RM has detected an NVML/RM version mismatch.";
    default: return "Unknown Error";
    }
}

nvmlReturn_t nvmlSystemGetDriverVersion(char *version, unsigned len) {
    REQUIRE_INIT();
    return copy_out(jstr(root, "driver_version", "570.133.20"), version, len);
}
nvmlReturn_t nvmlSystemGetNVMLVersion(char *version, unsigned len) {
    REQUIRE_INIT();
    return copy_out(jstr(root, "nvml_version", "12.570.133.20"), version, len);
}
/* The CUDA driver version needs no init, as in NVML. */
nvmlReturn_t nvmlSystemGetCudaDriverVersion(int *v) {
    if (!v) return NVML_ERROR_INVALID_ARGUMENT;
    if (!root && load_spec() != NVML_SUCCESS) return NVML_ERROR_DRIVER_NOT_LOADED;
    *v = (int)jnum(root, "cuda_driver_version", 12080);
    return NVML_SUCCESS;
}
nvmlReturn_t nvmlSystemGetCudaDriverVersion_v2(int *v) { return nvmlSystemGetCudaDriverVersion(v); }

nvmlReturn_t nvmlDeviceGetCount_v2(unsigned *count) {
    REQUIRE_INIT();
    if (!count) return NVML_ERROR_INVALID_ARGUMENT;
    *count = gpu_count;
    return NVML_SUCCESS;
}
nvmlReturn_t nvmlDeviceGetCount(unsigned *count) { return nvmlDeviceGetCount_v2(count); }

nvmlReturn_t nvmlDeviceGetHandleByIndex_v2(unsigned index, nvmlDevice_t *dev) {
    REQUIRE_INIT();
    if (!dev || index >= gpu_count) return NVML_ERROR_INVALID_ARGUMENT;
    *dev = &gpus[index];
    return NVML_SUCCESS;
}
nvmlReturn_t nvmlDeviceGetHandleByIndex(unsigned index, nvmlDevice_t *dev) {
    return nvmlDeviceGetHandleByIndex_v2(index, dev);
}

nvmlReturn_t nvmlDeviceGetHandleByUUID(const char *uuid, nvmlDevice_t *dev) {
    REQUIRE_INIT();
    if (!uuid || !dev) return NVML_ERROR_INVALID_ARGUMENT;
    for (unsigned i = 0; i < gpu_count; i++) {
        if (!strcmp(jstr(gpus[i].spec, "uuid", ""), uuid)) { *dev = &gpus[i]; return NVML_SUCCESS; }
        for (int m = 0; m < gpus[i].mig_count; m++)
            if (!strcmp(jstr(gpus[i].mig[m]->spec, "uuid", ""), uuid)) { *dev = gpus[i].mig[m]; return NVML_SUCCESS; }
    }
    return NVML_ERROR_NOT_FOUND;
}

nvmlReturn_t nvmlDeviceGetName(nvmlDevice_t d, char *name, unsigned len) {
    REQUIRE_DEV(d);
    return copy_out(jstr(d->spec, "name", "NVIDIA Graphics Device"), name, len);
}
nvmlReturn_t nvmlDeviceGetUUID(nvmlDevice_t d, char *uuid, unsigned len) {
    REQUIRE_DEV(d);
    return copy_out(jstr(d->spec, "uuid", ""), uuid, len);
}
nvmlReturn_t nvmlDeviceGetIndex(nvmlDevice_t d, unsigned *index) {
    REQUIRE_DEV(d);
    if (!index) return NVML_ERROR_INVALID_ARGUMENT;
    if (d->is_mig) return NVML_ERROR_NOT_SUPPORTED;
    *index = d->index;
    return NVML_SUCCESS;
}
nvmlReturn_t nvmlDeviceGetMinorNumber(nvmlDevice_t d, unsigned *minor) {
    REQUIRE_DEV(d);
    if (!minor) return NVML_ERROR_INVALID_ARGUMENT;
    if (d->is_mig) return NVML_ERROR_NOT_SUPPORTED;
    *minor = (unsigned)jnum(d->spec, "minor_number", d->index);
    return NVML_SUCCESS;
}

static void memory_of(nvmlDevice_t d, unsigned long long *total, unsigned long long *used) {
    *total = jnum(d->spec, "memory_total", 0);
    *used = jnum(d->spec, "memory_used", 0);
    if (*used > *total) *used = *total;
}
nvmlReturn_t nvmlDeviceGetMemoryInfo(nvmlDevice_t d, nvmlMemory_t *mem) {
    REQUIRE_DEV(d);
    if (!mem) return NVML_ERROR_INVALID_ARGUMENT;
    memory_of(d, &mem->total, &mem->used);
    mem->free = mem->total - mem->used;
    return NVML_SUCCESS;
}
nvmlReturn_t nvmlDeviceGetMemoryInfo_v2(nvmlDevice_t d, nvmlMemory_v2_t *mem) {
    REQUIRE_DEV(d);
    if (!mem) return NVML_ERROR_INVALID_ARGUMENT;
    memory_of(d, &mem->total, &mem->used);
    mem->reserved = jnum(d->spec, "memory_reserved", 0);
    mem->free = mem->total - mem->used;
    return NVML_SUCCESS;
}

nvmlReturn_t nvmlDeviceGetPciInfo_v3(nvmlDevice_t d, nvmlPciInfo_t *pci) {
    REQUIRE_DEV(d);
    if (!pci) return NVML_ERROR_INVALID_ARGUMENT;
    if (d->is_mig) d = d->parent; /* a MIG device reports its parent's PCI address */
    memset(pci, 0, sizeof *pci);
    const char *bus_id = jstr(d->spec, "pci_bus_id", "00000000:00:00.0");
    snprintf(pci->busId, sizeof pci->busId, "%s", bus_id);
    snprintf(pci->busIdLegacy, sizeof pci->busIdLegacy, "%s", bus_id + (strlen(bus_id) > 12 ? 4 : 0));
    sscanf(bus_id, "%x:%x:%x", &pci->domain, &pci->bus, &pci->device);
    pci->pciDeviceId = (unsigned)strtoul(jstr(d->spec, "pci_device_id", "0x0"), NULL, 16);
    pci->pciSubSystemId = (unsigned)strtoul(jstr(d->spec, "pci_subsystem_id", "0x0"), NULL, 16);
    return NVML_SUCCESS;
}
nvmlReturn_t nvmlDeviceGetPciInfo_v2(nvmlDevice_t d, nvmlPciInfo_t *pci) { return nvmlDeviceGetPciInfo_v3(d, pci); }

nvmlReturn_t nvmlDeviceGetCudaComputeCapability(nvmlDevice_t d, int *major, int *minor) {
    REQUIRE_DEV(d);
    if (!major || !minor) return NVML_ERROR_INVALID_ARGUMENT;
    if (d->is_mig) d = d->parent;
    const char *cc = jstr(d->spec, "compute_capability", "0.0");
    if (sscanf(cc, "%d.%d", major, minor) != 2) return NVML_ERROR_UNKNOWN;
    return NVML_SUCCESS;
}

/* MIG: only GPUs whose spec has mig_capable (or MIG on) support these calls. */
static int mig_capable(nvmlDevice_t d) { return jbool(d->spec, "mig_capable") || jbool(d->spec, "mig_mode"); }

nvmlReturn_t nvmlDeviceGetMigMode(nvmlDevice_t d, unsigned *current, unsigned *pending) {
    REQUIRE_DEV(d);
    if (!current || !pending) return NVML_ERROR_INVALID_ARGUMENT;
    if (d->is_mig || !mig_capable(d)) return NVML_ERROR_NOT_SUPPORTED;
    *current = (unsigned)jbool(d->spec, "mig_mode");
    jval *p = jget(d->spec, "mig_mode_pending");
    *pending = p && p->type == J_BOOL ? (unsigned)p->boolean : *current;
    return NVML_SUCCESS;
}
nvmlReturn_t nvmlDeviceGetMaxMigDeviceCount(nvmlDevice_t d, unsigned *count) {
    REQUIRE_DEV(d);
    if (!count) return NVML_ERROR_INVALID_ARGUMENT;
    if (d->is_mig || !mig_capable(d)) return NVML_ERROR_NOT_SUPPORTED;
    *count = MAX_MIG;
    return NVML_SUCCESS;
}
nvmlReturn_t nvmlDeviceGetMigDeviceHandleByIndex(nvmlDevice_t d, unsigned index, nvmlDevice_t *mig) {
    REQUIRE_DEV(d);
    if (!mig || index >= MAX_MIG) return NVML_ERROR_INVALID_ARGUMENT;
    if (d->is_mig || !mig_capable(d)) return NVML_ERROR_NOT_SUPPORTED;
    if ((int)index >= d->mig_count) return NVML_ERROR_NOT_FOUND;
    *mig = d->mig[index];
    return NVML_SUCCESS;
}
nvmlReturn_t nvmlDeviceIsMigDeviceHandle(nvmlDevice_t d, unsigned *is_mig) {
    REQUIRE_DEV(d);
    if (!is_mig) return NVML_ERROR_INVALID_ARGUMENT;
    *is_mig = (unsigned)d->is_mig;
    return NVML_SUCCESS;
}
nvmlReturn_t nvmlDeviceGetDeviceHandleFromMigDeviceHandle(nvmlDevice_t d, nvmlDevice_t *parent) {
    REQUIRE_DEV(d);
    if (!parent) return NVML_ERROR_INVALID_ARGUMENT;
    if (!d->is_mig) return NVML_ERROR_INVALID_ARGUMENT;
    *parent = d->parent;
    return NVML_SUCCESS;
}
nvmlReturn_t nvmlDeviceGetGpuInstanceId(nvmlDevice_t d, unsigned *id) {
    REQUIRE_DEV(d);
    if (!id) return NVML_ERROR_INVALID_ARGUMENT;
    if (!d->is_mig) return NVML_ERROR_NOT_SUPPORTED;
    *id = (unsigned)jnum(d->spec, "gpu_instance_id", d->index);
    return NVML_SUCCESS;
}
nvmlReturn_t nvmlDeviceGetComputeInstanceId(nvmlDevice_t d, unsigned *id) {
    REQUIRE_DEV(d);
    if (!id) return NVML_ERROR_INVALID_ARGUMENT;
    if (!d->is_mig) return NVML_ERROR_NOT_SUPPORTED;
    *id = (unsigned)jnum(d->spec, "compute_instance_id", 0);
    return NVML_SUCCESS;
}
