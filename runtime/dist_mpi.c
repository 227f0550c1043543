/* dist_mpi.c: the one thing deitc asks of MPI: rank 0's rendezvous address to every rank, when
 * mpirun (or srun with PMI) started the ranks and no MASTER_ADDR/MASTER_PORT says where rank 0
 * is. libmpi is loaded with dlopen (DEITC_MPI_LIBRARY, else Open MPI's libmpi.so.40, else
 * MPICH's libmpi.so.12), so the executable needs no MPI to start. The handles MPI_COMM_WORLD
 * and MPI_BYTE differ by ABI: Open MPI's are the addresses of its global objects, MPICH's are
 * integer constants; both are supported. Everything after the rendezvous runs over TCP.
 */
#include "runtime/dist.h"

#include <dlfcn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MPICH_COMM_WORLD 0x44000000
#define MPICH_BYTE 0x4c00010d

static void *libmpi;
static int (*mpi_finalize)(void);

int rt_dist_mpi_bcast(void *blob, int bytes, int rank, char *err, size_t errsize) {
    (void)rank;
    const char *env = getenv("DEITC_MPI_LIBRARY");
    const char *names[] = {env && *env ? env : "libmpi.so.40", "libmpi.so.12", "libmpi.so"};
    char first[300] = "";
    for (int i = 0; i < 3 && !libmpi; i++) {
        if (i > 0 && env && *env) break;
        libmpi = dlopen(names[i], RTLD_NOW | RTLD_GLOBAL); /* Open MPI's components need its symbols global */
        if (!libmpi && !first[0]) snprintf(first, sizeof first, "%s", dlerror());
    }
    if (!libmpi)
        return rt_errorf(err, errsize, "cannot load libmpi (%s): install Open MPI (libopenmpi3) or set "
                                       "DEITC_MPI_LIBRARY, or set MASTER_ADDR and MASTER_PORT", first);
    int (*init)(int *, char ***) = (int (*)(int *, char ***))dlsym(libmpi, "MPI_Init");
    mpi_finalize = (int (*)(void))dlsym(libmpi, "MPI_Finalize");
    void *bcast = dlsym(libmpi, "MPI_Bcast");
    void *ompi_world = dlsym(libmpi, "ompi_mpi_comm_world"), *ompi_byte = dlsym(libmpi, "ompi_mpi_byte");
    if (!init || !mpi_finalize || !bcast) return rt_errorf(err, errsize, "libmpi lacks MPI_Init/MPI_Bcast/MPI_Finalize");
    if (init(NULL, NULL)) {
        mpi_finalize = NULL;
        return rt_errorf(err, errsize, "MPI_Init failed");
    }
    int rc;
    if (ompi_world && ompi_byte) /* Open MPI: handles are pointers */
        rc = ((int (*)(void *, int, void *, int, void *))bcast)(blob, bytes, ompi_byte, 0, ompi_world);
    else /* MPICH ABI: integer handles */
        rc = ((int (*)(void *, int, int, int, int))bcast)(blob, bytes, MPICH_BYTE, 0, MPICH_COMM_WORLD);
    return rc ? rt_errorf(err, errsize, "MPI_Bcast of the rendezvous address failed (error %d)", rc) : 0;
}

void rt_dist_mpi_finalize(void) {
    if (mpi_finalize) mpi_finalize();
    mpi_finalize = NULL;
}
