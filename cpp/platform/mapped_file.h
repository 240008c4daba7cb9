// Read-only file mapping: the one unit in cpp/ (fuzz/ aside) that calls the operating system's file-mapping
// API (POSIX mmap, Windows CreateFileMapping + MapViewOfFile). Everything above it is portable C++.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>

namespace cm::platform {

class MappedFile {
public:
    // Maps the whole of `path` (UTF-8) read-only. On failure returns nullptr and sets `error` to a short reason
    // ("cannot open for reading: <os message>", "cannot map: ..."). An empty file maps to data() == nullptr.
    static std::unique_ptr<MappedFile> open(const std::string& path, std::string& error);
    ~MappedFile();
    MappedFile(const MappedFile&) = delete;
    MappedFile& operator=(const MappedFile&) = delete;

    const uint8_t* data() const { return data_; }
    size_t size() const { return size_; }

    // Hint that the mapping will be read once, front to back (more read-ahead). No-op where unsupported.
    void advise_sequential() const;
    // Drops this process's resident pages that lie wholly inside [p, p + n): they stay in the OS file cache
    // and fault back in if read again. Keeps resident memory bounded while streaming through a large file.
    // No-op for ranges outside the mapping.
    void release(const void* p, size_t n) const;

private:
    MappedFile() = default;
    const uint8_t* data_ = nullptr;
    size_t size_ = 0;
#ifdef _WIN32
    void* mapping_ = nullptr;  // HANDLE
#endif
};

}  // namespace cm::platform
