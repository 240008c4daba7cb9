#include "platform/mapped_file.h"

#include <system_error>

#ifdef _WIN32
#ifndef NOMINMAX
#define NOMINMAX
#endif
#ifndef WIN32_LEAN_AND_MEAN
#define WIN32_LEAN_AND_MEAN
#endif
#include <filesystem>
#include <windows.h>
#else
#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#endif

namespace cm::platform {

namespace {

// The page-aligned part [lo, hi) of [p, p + n) that lies inside the mapping [base, base + size); empty if none.
bool inner_pages(const uint8_t* base, size_t size, const void* p, size_t n, size_t page, uintptr_t* lo, uintptr_t* hi) {
    const auto* b = static_cast<const uint8_t*>(p);
    if (!base || n == 0 || b < base || b > base + size || n > size_t(base + size - b)) return false;
    *lo = (reinterpret_cast<uintptr_t>(b) + page - 1) / page * page;
    *hi = (reinterpret_cast<uintptr_t>(b) + n) / page * page;
    return *hi > *lo;
}

}  // namespace

#ifdef _WIN32

namespace {

std::string last_error() { return std::system_category().message(static_cast<int>(GetLastError())); }

size_t page_size() {
    SYSTEM_INFO si;
    GetSystemInfo(&si);
    return si.dwPageSize;
}

}  // namespace

std::unique_ptr<MappedFile> MappedFile::open(const std::string& path, std::string& error) {
    const std::wstring wpath = std::filesystem::u8path(path).wstring();
    HANDLE file = CreateFileW(wpath.c_str(), GENERIC_READ, FILE_SHARE_READ | FILE_SHARE_DELETE, nullptr,
                              OPEN_EXISTING, FILE_ATTRIBUTE_NORMAL, nullptr);
    if (file == INVALID_HANDLE_VALUE) {
        error = "cannot open for reading: " + last_error();
        return nullptr;
    }
    std::unique_ptr<MappedFile> m(new MappedFile());
    LARGE_INTEGER sz;
    if (!GetFileSizeEx(file, &sz)) {
        error = "cannot read the file size: " + last_error();
        CloseHandle(file);
        return nullptr;
    }
    m->size_ = static_cast<size_t>(sz.QuadPart);
    if (m->size_ > 0) {
        // The mapping object keeps the file open; the file handle itself is no longer needed.
        HANDLE mapping = CreateFileMappingW(file, nullptr, PAGE_READONLY, 0, 0, nullptr);
        if (mapping) m->data_ = static_cast<const uint8_t*>(MapViewOfFile(mapping, FILE_MAP_READ, 0, 0, 0));
        if (!m->data_) {
            error = "cannot map: " + last_error();
            if (mapping) CloseHandle(mapping);
            CloseHandle(file);
            return nullptr;
        }
        m->mapping_ = mapping;
    }
    CloseHandle(file);
    return m;
}

MappedFile::~MappedFile() {
    if (data_) UnmapViewOfFile(data_);
    if (mapping_) CloseHandle(static_cast<HANDLE>(mapping_));
}

void MappedFile::advise_sequential() const {}

void MappedFile::release(const void* p, size_t n) const {
    uintptr_t lo = 0, hi = 0;
    // VirtualUnlock on pages that are not locked removes them from the working set (documented behaviour);
    // it then reports ERROR_NOT_LOCKED, which is expected here.
    if (inner_pages(data_, size_, p, n, page_size(), &lo, &hi)) VirtualUnlock(reinterpret_cast<void*>(lo), hi - lo);
}

#else

namespace {

std::string errno_text() { return std::generic_category().message(errno); }

size_t page_size() { return static_cast<size_t>(::sysconf(_SC_PAGESIZE)); }

}  // namespace

std::unique_ptr<MappedFile> MappedFile::open(const std::string& path, std::string& error) {
    const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        error = "cannot open for reading: " + errno_text();
        return nullptr;
    }
    std::unique_ptr<MappedFile> m(new MappedFile());
    struct stat st {};
    if (::fstat(fd, &st) != 0) {
        error = "cannot read the file size: " + errno_text();
        ::close(fd);
        return nullptr;
    }
    m->size_ = static_cast<size_t>(st.st_size);
    if (m->size_ > 0) {
        void* p = ::mmap(nullptr, m->size_, PROT_READ, MAP_SHARED, fd, 0);
        if (p == MAP_FAILED) {
            error = "cannot map: " + errno_text();
            ::close(fd);
            return nullptr;
        }
        m->data_ = static_cast<const uint8_t*>(p);
    }
    ::close(fd);  // the mapping keeps the file referenced
    return m;
}

MappedFile::~MappedFile() {
    if (data_) ::munmap(const_cast<uint8_t*>(data_), size_);
}

void MappedFile::advise_sequential() const {
    if (data_) ::posix_madvise(const_cast<uint8_t*>(data_), size_, POSIX_MADV_SEQUENTIAL);
}

void MappedFile::release(const void* p, size_t n) const {
    uintptr_t lo = 0, hi = 0;
    // madvise, not posix_madvise: glibc makes POSIX_MADV_DONTNEED a no-op. On this read-only mapping
    // MADV_DONTNEED only drops clean pages, which are re-read from the file if touched again.
    if (inner_pages(data_, size_, p, n, page_size(), &lo, &hi)) {
        ::madvise(reinterpret_cast<void*>(lo), hi - lo, MADV_DONTNEED);
    }
}

#endif

}  // namespace cm::platform
