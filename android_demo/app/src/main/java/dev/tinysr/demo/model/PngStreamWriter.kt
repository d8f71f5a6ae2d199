package dev.tinysr.demo.model

import java.io.DataOutputStream
import java.io.OutputStream
import java.util.zip.CRC32
import java.util.zip.Deflater
import java.util.zip.DeflaterOutputStream

/**
 * An 8-bit RGB PNG written row by row: an upscaled 12 MP photo (192 MP at x4) is saved without
 * ever being one bitmap in memory. Rows are Sub-filtered and deflated into IDAT chunks of 64 KiB.
 */
class PngStreamWriter(out: OutputStream, private val width: Int, private val height: Int) : AutoCloseable {
    private val sink = DataOutputStream(out)
    private val idat = ChunkStream()
    private val deflater = Deflater(6)
    private val deflate = DeflaterOutputStream(idat, deflater, 1 shl 16)
    private val line = ByteArray(1 + width * 3)
    private var rows = 0

    init {
        require(width > 0 && height > 0)
        sink.write(byteArrayOf(0x89.toByte(), 'P'.code.toByte(), 'N'.code.toByte(), 'G'.code.toByte(), 13, 10, 26, 10))
        val ihdr = java.io.ByteArrayOutputStream()
        DataOutputStream(ihdr).apply {
            writeInt(width); writeInt(height)
            writeByte(8); writeByte(2); writeByte(0); writeByte(0); writeByte(0) // 8-bit RGB, no interlace
        }
        chunk("IHDR", ihdr.toByteArray(), ihdr.size())
    }

    /** One row of opaque ARGB pixels, [width] of them from [offset]. */
    fun writeRow(argb: IntArray, offset: Int = 0) {
        check(rows < height) { "PNG already has its $height rows" }
        line[0] = 1 // Sub filter
        var prevR = 0
        var prevG = 0
        var prevB = 0
        for (i in 0 until width) {
            val p = argb[offset + i]
            val r = (p shr 16) and 0xFF
            val g = (p shr 8) and 0xFF
            val b = p and 0xFF
            line[1 + 3 * i] = (r - prevR).toByte()
            line[2 + 3 * i] = (g - prevG).toByte()
            line[3 + 3 * i] = (b - prevB).toByte()
            prevR = r; prevG = g; prevB = b
        }
        deflate.write(line)
        rows++
    }

    override fun close() {
        check(rows == height) { "PNG has $rows of its $height rows" }
        deflate.finish()
        deflater.end()
        idat.flush()
        chunk("IEND", ByteArray(0), 0)
        sink.flush()
    }

    private fun chunk(type: String, data: ByteArray, length: Int) {
        val crc = CRC32()
        val t = type.toByteArray(Charsets.US_ASCII)
        crc.update(t)
        crc.update(data, 0, length)
        sink.writeInt(length)
        sink.write(t)
        sink.write(data, 0, length)
        sink.writeInt(crc.value.toInt())
    }

    /** Deflated bytes, cut into IDAT chunks. */
    private inner class ChunkStream : OutputStream() {
        private val buf = ByteArray(1 shl 16)
        private var n = 0

        override fun write(b: Int) {
            if (n == buf.size) flush()
            buf[n++] = b.toByte()
        }

        override fun write(b: ByteArray, off: Int, len: Int) {
            var o = off
            var left = len
            while (left > 0) {
                if (n == buf.size) flush()
                val k = minOf(left, buf.size - n)
                System.arraycopy(b, o, buf, n, k)
                n += k; o += k; left -= k
            }
        }

        override fun flush() {
            if (n > 0) chunk("IDAT", buf, n)
            n = 0
        }
    }
}
