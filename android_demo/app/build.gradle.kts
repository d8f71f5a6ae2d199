import org.jetbrains.kotlin.gradle.dsl.JvmTarget

plugins {
    alias(libs.plugins.android.application)
    alias(libs.plugins.kotlin.android)
    alias(libs.plugins.kotlin.compose)
}

android {
    namespace = "dev.tinysr.demo"
    compileSdk = 36

    defaultConfig {
        applicationId = "dev.tinysr.demo"
        minSdk = 24 // the LiteRT 2.x AARs need 24
        targetSdk = 36
        versionCode = 1
        versionName = "1.0"
    }

    buildTypes {
        release {
            isMinifyEnabled = false
            signingConfig = signingConfigs.getByName("debug") // a demo: installable without a release key
        }
    }

    // One contract with the Python side (tinysr android-demo prepare, tests/test_android_demo.py):
    // android_demo/contract/card_contract.json is an asset of the app and a resource of its unit tests.
    sourceSets {
        getByName("main") { assets.srcDir("../contract") }
        getByName("test") { resources.srcDir("../contract") }
    }

    androidResources {
        noCompress += "tflite" // the model is memory-mapped from the APK
    }

    compileOptions {
        sourceCompatibility = JavaVersion.VERSION_17
        targetCompatibility = JavaVersion.VERSION_17
    }

    buildFeatures {
        compose = true
    }
}

kotlin {
    compilerOptions {
        jvmTarget.set(JvmTarget.JVM_17)
    }
}

dependencies {
    implementation(libs.androidx.core.ktx)
    implementation(libs.androidx.activity.compose)
    implementation(libs.androidx.lifecycle.runtime.compose)
    implementation(libs.androidx.lifecycle.viewmodel.compose)
    implementation(platform(libs.androidx.compose.bom))
    implementation(libs.androidx.compose.ui)
    implementation(libs.androidx.compose.ui.graphics)
    implementation(libs.androidx.compose.ui.tooling.preview)
    implementation(libs.androidx.compose.material3)
    implementation(libs.kotlinx.coroutines.android)
    implementation(libs.kotlinx.serialization.json)
    implementation(libs.litert)
    implementation(libs.litert.gpu)
    debugImplementation(libs.androidx.compose.ui.tooling)

    testImplementation(libs.junit)
}
