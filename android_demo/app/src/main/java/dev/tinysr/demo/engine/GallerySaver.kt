package dev.tinysr.demo.engine

import android.content.ContentValues
import android.content.Context
import android.os.Build
import android.os.Environment
import android.provider.MediaStore
import java.io.File

/**
 * Copies the upscaled PNG into the gallery through MediaStore, streaming: into Pictures/tinysr from
 * Android 10 on (RELATIVE_PATH); before it MediaStore has no such column and the picture goes
 * where the system puts it (Pictures). [save] returns where, for the message.
 */
object GallerySaver {
    val FOLDER: String
        get() = if (Build.VERSION.SDK_INT >= Build.VERSION_CODES.Q) "${Environment.DIRECTORY_PICTURES}/tinysr" else "the gallery (${Environment.DIRECTORY_PICTURES})"

    fun save(context: Context, png: File, displayName: String): String {
        val resolver = context.contentResolver
        val values = ContentValues().apply {
            put(MediaStore.Images.Media.DISPLAY_NAME, displayName)
            put(MediaStore.Images.Media.MIME_TYPE, "image/png")
            if (Build.VERSION.SDK_INT >= Build.VERSION_CODES.Q) {
                put(MediaStore.Images.Media.RELATIVE_PATH, "${Environment.DIRECTORY_PICTURES}/tinysr")
                put(MediaStore.Images.Media.IS_PENDING, 1)
            }
        }
        val collection = if (Build.VERSION.SDK_INT >= Build.VERSION_CODES.Q) {
            MediaStore.Images.Media.getContentUri(MediaStore.VOLUME_EXTERNAL_PRIMARY)
        } else {
            MediaStore.Images.Media.EXTERNAL_CONTENT_URI
        }
        val uri = resolver.insert(collection, values) ?: error("the gallery refused a new picture")
        try {
            resolver.openOutputStream(uri)?.use { out -> png.inputStream().use { it.copyTo(out, 1 shl 16) } }
                ?: error("cannot write to the gallery")
            if (Build.VERSION.SDK_INT >= Build.VERSION_CODES.Q) {
                resolver.update(uri, ContentValues().apply { put(MediaStore.Images.Media.IS_PENDING, 0) }, null, null)
            }
        } catch (e: Exception) {
            resolver.delete(uri, null, null)
            throw e
        }
        return FOLDER
    }
}
