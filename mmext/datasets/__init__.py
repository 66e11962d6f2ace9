from .demo import OBJECT_CLASSES, SEG_CLASSES, make_demo_data

__all__ = ['make_demo_data', 'OBJECT_CLASSES', 'SEG_CLASSES']
