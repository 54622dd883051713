import Dispatch

/// A buffer that concurrent workers write at distinct indices. The caller makes
/// every index written by exactly one worker and reads only after the parallel
/// loop returned, so no two threads ever touch the same element. Package-wide: the
/// test-support chain generator (TallyVerifyTesting) signs in parallel with it too.
package final class SharedBuffer<Element>: @unchecked Sendable {
    let pointer: UnsafeMutableBufferPointer<Element>

    package init(repeating value: Element, count: Int) {
        pointer = .allocate(capacity: count)
        pointer.initialize(repeating: value)
    }

    package subscript(index: Int) -> Element {
        get { pointer[index] }
        set { pointer[index] = newValue }
    }

    var array: [Element] { Array(pointer) }

    deinit {
        pointer.deinitialize()
        pointer.deallocate()
    }
}

package enum Parallel {
    /// Runs `body(0..<count)` on all cores (Dispatch's concurrentPerform, which sizes
    /// its pool to the active processor count).
    package static func forEach(_ count: Int, _ body: @Sendable (Int) -> Void) {
        if count == 1 { body(0) } else if count > 1 { DispatchQueue.concurrentPerform(iterations: count, execute: body) }
    }
}
