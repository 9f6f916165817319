package io.diffusion4j.distributed;

import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.util.Map;
import org.junit.jupiter.api.Test;

/** MPI is reached only on demand, and its absence is a message, not a crash (the 2-rank jobs are DistributedTrainTest). */
class MpiLoadTest {
    @Test
    void aProcessWithoutALauncherIsToldHowToStartOne() {
        MpiException e = assertThrows(MpiException.class, () -> Mpi.init(Map.of("PATH", "/usr/bin")));
        assertTrue(e.getMessage().contains("not started by an MPI launcher")
                && e.getMessage().contains("mpirun -np N"), e.getMessage());
    }

    @Test
    void aMissingLibraryIsNamedWithTheFix() {
        String before = System.getProperty(Mpi.LIBRARY_PROPERTY);
        System.setProperty(Mpi.LIBRARY_PROPERTY, "/nonexistent/libmpi.so.40");
        try {
            MpiException e = assertThrows(MpiException.class, () -> Mpi.init(Map.of("OMPI_COMM_WORLD_SIZE", "2")));
            assertTrue(e.getMessage().contains("no MPI library could be loaded")
                    && e.getMessage().contains("/nonexistent/libmpi.so.40")
                    && e.getMessage().contains("openmpi-bin"), e.getMessage());
        } finally {
            if (before == null) System.clearProperty(Mpi.LIBRARY_PROPERTY);
            else System.setProperty(Mpi.LIBRARY_PROPERTY, before);
        }
    }
}
