package dev.tinysr.demo.model

import org.junit.Assert.assertEquals
import org.junit.Assert.assertNull
import org.junit.Assert.assertTrue
import org.junit.Test

class AcceleratorTextTest {
    @Test
    fun anInt8ModelOnTheGpuIsSaidToRunInFloat() {
        assertEquals("GPU (computing this int8 model in float)", AcceleratorText.label(true, 4, emptyList(), "int8"))
        assertEquals("GPU", AcceleratorText.label(true, 4, emptyList(), "fp32"))
        assertEquals("GPU, with 1 op on the CPU (RELU_0_TO_1)", AcceleratorText.label(true, 4, listOf("RELU_0_TO_1"), "fp16"))
        assertTrue(AcceleratorText.label(true, 1, listOf("A", "B"), "int8").startsWith("GPU (computing this int8 model in float), with 2 ops"))
    }

    @Test
    fun theCpuLabelNamesThreadsAndInt8Kernels() {
        assertEquals("CPU (XNNPACK, 1 thread)", AcceleratorText.label(false, 1, listOf("X"), "fp32"))
        assertEquals("CPU (XNNPACK, 4 threads, int8 kernels)", AcceleratorText.label(false, 4, emptyList(), "int8"))
        assertNull(AcceleratorText.gpuNote("fp32"))
        assertTrue(AcceleratorText.gpuNote("int8")!!.contains("in float"))
    }
}
